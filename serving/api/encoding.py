"""A score row encoded as ``ScoreRow`` renders it, without building the pydantic objects.

``encode_score_row`` (``serving.api.state``) validates a row with ``ScoreRow`` — its drivers and
actions with ``Driver``, ``Action`` and ``ExpectedImpact`` — and dumps the result: on a live
answer's one row that costs more than the row's drivers. ``encode_row`` writes the same bytes
for the rows ``score_features`` gives (declared fields in declaration order with their
defaults, then the extra columns in their order; an int in a float field as a float, a whole
float in the int field as an int) and hands every row it is not sure of — a missing or
mistyped required field, a non-finite float, a nested value where a plain one is expected — to
``encode_score_row``, so the schema and its errors stay in one place.
tests/serving/test_live_answers.py compares the two on many random rows.
"""

from __future__ import annotations

import json
import math
from typing import Any

from serving.api.state import dumps, encode_score_row


class _UnsureError(Exception):
    """The row needs the pydantic path."""


_MISSING = object()


def _str(value: Any, required: bool = False) -> Any:
    if isinstance(value, str):
        return value
    if value is None and not required:
        return None
    raise _UnsureError


def _float(value: Any, required: bool = False) -> Any:
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        raise _UnsureError
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if value is None and not required:
        return None
    raise _UnsureError


def _int(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if value is None:
        return None
    raise _UnsureError


def _plain(value: Any) -> Any:
    """A value of an ``Any`` field or an extra column: a JSON scalar, as it is."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise _UnsureError


def _choice(*allowed: str) -> Any:
    """The check of a ``Literal[...] | None`` field."""

    def check(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value in allowed):
            return value
        raise _UnsureError

    return check


_ROW_FIELDS: dict[str, Any] = {
    "deal_id": lambda v: _str(v, True),
    "owner_id": _str,
    "team": _str,
    "win_probability": _float,
    "score": _int,
    "model_version": lambda v: _str(v, True),
    "as_of": _str,
    "drivers": lambda v: _items(v, _driver),
    "actions": lambda v: _items(v, _action),
    "drivers_base": _float,
    "p_close_30d": _float,
    "p_close_60d": _float,
    "p_close_90d": _float,
    "p_close_this_month": _float,
    "p_close_this_quarter": _float,
    "expected_close_date": _str,
    "days_to_close_low": _float,
    "days_to_close_high": _float,
    "expected_revenue": _float,
    "expected_revenue_basis": _choice("amount", "list_price"),
    "score_basis": _choice("model", "base_rate", "beyond_observed_ages", "unseen_input"),
    "score_warning": _str,
}


def _model(value: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """``value`` (a dict) as the model with ``fields`` (name -> check, called with the value
    or ``_MISSING``) dumps it: declared fields first, then the extras in their order."""
    if not isinstance(value, dict):
        raise _UnsureError
    out = {name: check(value.get(name, _MISSING)) for name, check in fields.items()}
    for key, extra in value.items():
        if key not in fields:
            if not isinstance(key, str):
                raise _UnsureError
            out[key] = _plain(extra)
    return out


def _required(check: Any) -> Any:
    def run(value: Any) -> Any:
        if value is _MISSING:
            raise _UnsureError
        return check(value)

    return run


def _default(check: Any, default: Any) -> Any:
    def run(value: Any) -> Any:
        return default if value is _MISSING else check(value)

    return run


_DRIVER = {
    "concept": _required(lambda v: _str(v, True)),
    "feature": _required(lambda v: _str(v, True)),
    "value": _default(_plain, None),
    "contribution": _required(lambda v: _float(v, True)),
    "text": _required(lambda v: _str(v, True)),
}
_IMPACT = {
    "win_probability_points": _required(lambda v: _float(v, True)),
    "revenue": _default(_float, None),
    "basis": _required(lambda v: _str(v, True)),
}


def _impact(value: Any) -> Any:
    return None if value is None else _model(value, _IMPACT)


def _changes(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _UnsureError
    return {k: _plain(v) for k, v in value.items()}


_ACTION = {
    "id": _required(lambda v: _str(v, True)),
    "kind": _required(lambda v: _str(v, True)),
    "concept": _default(_str, None),
    "action": _required(lambda v: _str(v, True)),
    "reason": _required(lambda v: _str(v, True)),
    "expected_impact": _default(_impact, None),
    "changes": _default(_changes, {}),
}


def _driver(value: Any) -> dict[str, Any]:
    return _model(value, _DRIVER)


def _action(value: Any) -> dict[str, Any]:
    return _model(value, _ACTION)


def _items(value: Any, one: Any) -> Any:
    """A list of drivers or actions, held as JSON text (``ScoreRow._decoded``) or as a list."""
    if isinstance(value, str):
        value = json.loads(value)
    elif isinstance(value, float) and math.isnan(value):
        return None
    if value is None:
        return None
    if not isinstance(value, list):
        raise _UnsureError
    return [one(item) for item in value]


def row_document(record: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON document ``ScoreRow(**record).model_dump(mode="json")`` gives, or ``None``
    when the row needs the pydantic path."""
    try:
        out = {
            name: check(record.get(name)) if name in record else check(None)
            for name, check in _ROW_FIELDS.items()
        }
        if out["deal_id"] is None or out["model_version"] is None:
            return None
        for key, extra in record.items():
            if key not in _ROW_FIELDS:
                out[str(key)] = _plain(extra)
    except (_UnsureError, ValueError):
        return None
    return out


def encode_row(record: dict[str, Any]) -> bytes:
    """``encode_score_row(record)``: the same bytes, cheaper for the rows ``score_features``
    gives (see the module)."""
    document = row_document(record)
    if document is None:
        return encode_score_row(record)
    return dumps(document).encode()
