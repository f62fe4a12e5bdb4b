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


# --- documents salesml reads back (model bundles) -----------------------------------------
# A bundle must round-trip exactly: a log prior of -inf is a bin the model rules out, not a
# missing value. Non-finite floats are written as ``{"$float": "-Infinity"}`` (strict JSON
# that says what it is) and read back as floats; documents written before (with bare NaN
# tokens) still read.
FLOAT_TAG = "$float"
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _tag_non_finite(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isfinite(number):
            return number
        name = "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
        return {FLOAT_TAG: name}
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return [_tag_non_finite(item) for item in value.tolist()]
    if isinstance(value, Mapping):
        return {key: _tag_non_finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_tag_non_finite(item) for item in value]
    return value


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and FLOAT_TAG in obj and obj[FLOAT_TAG] in _NON_FINITE:
        return _NON_FINITE[obj[FLOAT_TAG]]
    return obj


def dumps_exact(
    value: Any, *, indent: int | None = None, default: Callable[[Any], Any] | None = None
) -> str:
    """Strict JSON of ``value`` that ``loads_exact`` reads back float for float."""
    return json.dumps(_tag_non_finite(value), indent=indent, default=default, allow_nan=False)


def loads_exact(text: str) -> Any:
    """Read a document written by ``dumps_exact`` (or by plain ``json.dumps``)."""
    return json.loads(text, object_hook=_untag)
