"""JSON the product writes: strict RFC 8259, so every consumer can read it.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which is not JSON: a value the
data cannot support is ``null`` instead. ``dumps`` is the one writer for the JSON a user or a
client reads (``--json`` output, import summaries, score runs, keys, headlines).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def strict(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf, numpy's too) replaced by ``None``
    and numpy scalars as plain Python numbers; containers are copied, other values kept."""
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Mapping):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict(item) for item in value]
    return value


def dumps(
    value: Any,
    *,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    default: Callable[[Any], Any] | None = None,
) -> str:
    """``json.dumps`` of ``strict(value)`` that refuses NaN and Infinity."""
    return json.dumps(
        strict(value), indent=indent, separators=separators, default=default, allow_nan=False
    )
