"""The feature contract: which features a model reads, of which kind, on which vocabularies.

Every bundle (win, timing) carries one and turns feature rows into its model's input through
it, so a model is never handed columns in another order or categories on another coding. The
bundle documents (``bundle.json``, ``timing.json``) are read through ``read_document``, which
checks their format version.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesml.errors import SalesmlError
from salesml.jsonio import loads_exact


class BundleError(SalesmlError):
    """A bundle cannot be loaded or does not fit the data it is given."""


@dataclass(frozen=True)
class FeatureContract:
    """The features a model was trained on, in model order.

    Attributes:
        features: feature names in model order.
        kinds: feature name → "numeric" | "categorical".
        vocabularies: categorical feature → categories in training order.
        spec_version: the feature spec version the features were built with (for messages).
    """

    features: list[str]
    kinds: Mapping[str, str]
    vocabularies: dict[str, list[str]]
    spec_version: str = ""

    def matrix(self, features: pd.DataFrame) -> pd.DataFrame:
        """The model's input: columns in order, categoricals on the training vocabulary."""
        missing = [f for f in self.features if f not in features.columns]
        if missing:
            raise BundleError(
                f"features {', '.join(missing)} are missing; the bundle expects the feature spec "
                f"version {self.spec_version!r} — rebuild features with the same salesml version"
            )
        columns: dict[str, Any] = {}
        for name in self.features:
            column = features[name]
            if self.kinds[name] == "categorical":
                columns[name] = _on_vocabulary(column, self.vocabularies[name])
            elif column.dtype == np.float64:
                columns[name] = column.to_numpy()
            else:
                columns[name] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        # One frame built from all columns at once (column-by-column insertion costs ~25 ms
        # per call on a single row, which the API pays on every request).
        return pd.DataFrame(columns, index=features.index, copy=False)

    def model_matrix(self, features: pd.DataFrame) -> np.ndarray:
        """``matrix`` as LightGBM sees it: float64, category codes, NaN for missing.

        Computed column by column straight from ``features`` (no intermediate frame): the same
        numbers as ``matrix`` gives, at a fraction of the per-call cost on a few rows.
        """
        missing = [f for f in self.features if f not in features.columns]
        if missing:
            self.matrix(features)  # raises the BundleError naming them
        out = np.empty((len(features), len(self.features)), dtype=np.float64)
        arrays = column_arrays(features)
        for i, name in enumerate(self.features):
            values = arrays.get(name)
            fast = None if values is None else self._encode_fast(name, values)
            out[:, i] = fast if fast is not None else self.encode(name, features[name])
        return out

    def _encode_fast(self, name: str, values: Any) -> np.ndarray | None:
        """``encode`` of a column's stored values (``column_arrays``) when they are a float64
        array or a categorical (the feature frames' dtypes: what ``encode`` reads from the
        Series, without building it); None for any other dtype (``encode`` then reads it)."""
        if self.kinds[name] == "categorical":
            if not isinstance(values, pd.Categorical):
                return None
            codes = _categorical_codes(values, self.vocabularies[name]).astype(np.float64)
            codes[codes < 0] = np.nan
            return codes
        if isinstance(values, np.ndarray) and values.dtype == np.float64:
            return values
        return None

    def encode(self, name: str, column: pd.Series) -> np.ndarray:
        """One column of ``model_matrix``: feature ``name``'s values as LightGBM sees them."""
        if self.kinds[name] == "categorical":
            codes = _vocabulary_codes(column, self.vocabularies[name]).astype(np.float64)
            codes[codes < 0] = np.nan
            return codes
        if column.dtype == np.float64:
            return np.asarray(column.to_numpy(), dtype=np.float64)
        return np.asarray(
            pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan),
            dtype=np.float64,
        )


FEW_ROWS = 64  # up to this many rows (a live scoring batch), values are converted one by one


def object_values(column: pd.Series) -> np.ndarray:
    """A copy of ``column.astype("object").to_numpy()``: the values as Python objects (NaN where
    missing). On a few rows, value by value: converting a categorical or Arrow string column
    costs ~0.25 ms a call (``tolist`` ~0.1 ms up to 64 rows), which a live scoring batch pays
    for every column its drivers and actions read."""
    if len(column) <= FEW_ROWS:
        return np.array(column.tolist(), dtype=object)
    return np.array(column.astype("object").to_numpy(), dtype=object)


def codes_match(booster: Any, contract: FeatureContract) -> bool:
    """Whether ``booster`` codes categoricals exactly as ``contract.model_matrix`` does: its
    stored pandas categories are the contract's vocabularies, in model order. Then a float
    matrix and the categorical frame of ``contract.matrix`` give LightGBM the same numbers."""
    if booster is None:
        return False
    stored = getattr(booster, "pandas_categorical", None)
    categorical = [n for n in contract.features if contract.kinds[n] == "categorical"]
    if not categorical:
        return stored is None or len(stored) == 0
    if stored is None or len(stored) != len(categorical):
        return False
    return all(
        list(stored[i]) == list(contract.vocabularies[name]) for i, name in enumerate(categorical)
    )


def read_document(
    path: Path,
    name: str,
    expected_format: int | tuple[int, ...],
    what: str,
    error: type[SalesmlError] = BundleError,
) -> dict[str, Any]:
    """The JSON document ``name`` of a saved bundle folder, checked for its format version
    (one version, or every version this salesml still reads)."""
    doc_path = path / name
    if not doc_path.exists():
        raise error(f"{path} holds no {what} ({name} is missing)")
    doc: dict[str, Any] = loads_exact(doc_path.read_text(encoding="utf-8"))
    readable = (expected_format,) if isinstance(expected_format, int) else expected_format
    if doc.get("format") not in readable:
        names = [str(v) for v in readable]
        versions = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        raise error(
            f"{path} is {what} format {doc.get('format')}, this salesml reads {versions}; "
            "retrain with this salesml (salesml train) or use the salesml that wrote it"
        )
    return doc


def _on_vocabulary(column: pd.Series, vocabulary: list[str]) -> pd.Categorical[Any]:
    """``column`` as a categorical on the training vocabulary (unseen values become missing)."""
    _, dtype, _ = _vocabulary_index(tuple(vocabulary))
    recoded: pd.Categorical[Any] = pd.Categorical.from_codes(
        _vocabulary_codes(column, vocabulary), dtype=dtype
    )
    return recoded


def _vocabulary_codes(column: pd.Series, vocabulary: list[str]) -> np.ndarray:
    """Position of each value of ``column`` in the training vocabulary (-1: missing/unseen).

    Categorical input is re-coded through its (few) categories instead of row by row, with a
    plain dict (``Index.get_indexer`` costs ~0.5 ms a call between Arrow and object strings);
    the vocabulary's index is built once per vocabulary.
    """
    index, _, positions = _vocabulary_index(tuple(vocabulary))
    if isinstance(column.dtype, pd.CategoricalDtype):
        return _categorical_codes(column.array, vocabulary)
    values = column.to_numpy(dtype=object)
    present = pd.notna(values)
    out = np.full(len(values), -1, dtype=np.int64)
    if not present.any():
        return out
    text = values[present].astype(str)
    if len(text) <= FEW_ROWS:
        # A live answer's what-if (a stage to move to): the vocabulary's dict, what
        # get_indexer gives on its unique index (~0.5 ms a call between Arrow and objects).
        out[present] = [positions.get(v, -1) for v in text.tolist()]
    else:
        out[present] = index.get_indexer(pd.Index(text))
    return out


def _categorical_codes(values: Any, vocabulary: list[str]) -> np.ndarray:
    """``_vocabulary_codes`` of a ``pd.Categorical``: re-coded through its categories."""
    _, _, positions = _vocabulary_index(tuple(vocabulary))
    lookup = _category_lookup(values.dtype.categories, vocabulary, positions)
    codes = np.asarray(values.codes)
    if len(lookup) == 0:
        return np.full(len(codes), -1, dtype=np.int64)
    mapped: np.ndarray = np.where(codes >= 0, lookup[np.maximum(codes, 0)], -1).astype(np.int64)
    return mapped


def column_arrays(features: pd.DataFrame) -> dict[str, Any]:
    """Column name → the column's stored values (a numpy array or an extension array, as
    ``features[name].array`` holds them), read from the frame's blocks without building a
    Series per column (~20 us each: a live answer reads ~60). {} when the names are not
    unique strings or the frame's internals are not the ones this pandas version has (the
    caller then reads ``features[name]``)."""
    columns = features.columns
    if not columns.is_unique:
        return {}
    try:
        get = features._mgr.iget_values
        return {str(name): get(i) for i, name in enumerate(columns) if isinstance(name, str)}
    except AttributeError:  # another pandas: the public path
        return {}


def column_values(features: pd.DataFrame, name: str) -> Any | None:
    """``features[name]``'s stored values (``column_arrays`` of one column); None when the
    frame has no such single column or its internals are not this pandas version's."""
    try:
        loc = features.columns.get_loc(name)
    except KeyError:
        return None
    if not isinstance(loc, int):
        return None
    try:
        return features._mgr.iget_values(loc)
    except AttributeError:
        return None


def float_column(features: pd.DataFrame, name: str) -> np.ndarray:
    """``pd.to_numeric(features[name], errors="coerce").to_numpy(dtype=float)`` (a copy); a
    float64 column's values are copied straight from the frame (no Series, no conversion)."""
    values = column_values(features, name)
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return np.array(values, dtype=np.float64)
    return np.array(
        pd.to_numeric(features[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan),
        dtype=np.float64,
    )


# (id of a categories index, id of a vocabulary) -> (the two objects, the lookup): feature frames
# share their categories objects, so a what-if's row re-uses the lookup of every earlier row
# (an account column has thousands of categories: mapping them costs ~1 ms a call).
_LOOKUPS: dict[tuple[int, int], tuple[pd.Index, list[str], np.ndarray]] = {}
_LOOKUPS_MAX = 512


def _category_lookup(
    categories: pd.Index, vocabulary: list[str], positions: dict[str, int]
) -> np.ndarray:
    """Vocabulary position of each of ``categories`` (-1: not in it)."""
    key = (id(categories), id(vocabulary))
    hit = _LOOKUPS.get(key)
    if hit is not None and hit[0] is categories and hit[1] is vocabulary:
        return hit[2]
    names = categories.astype(str).tolist()
    lookup = np.fromiter((positions.get(c, -1) for c in names), dtype=np.int64, count=len(names))
    if len(_LOOKUPS) >= _LOOKUPS_MAX:
        _LOOKUPS.clear()
    _LOOKUPS[key] = (categories, vocabulary, lookup)
    return lookup


@functools.lru_cache(maxsize=256)
def _vocabulary_index(
    vocabulary: tuple[str, ...],
) -> tuple[pd.Index, pd.CategoricalDtype, dict[str, int]]:
    index = pd.Index(list(vocabulary), dtype=object)
    # get_indexer semantics on a unique index: the position of an equal string; with repeats
    # (never in a trained vocabulary) get_indexer would refuse, so the first one is as good.
    positions: dict[str, int] = {}
    for i, value in enumerate(vocabulary):
        positions.setdefault(value, i)
    return index, pd.CategoricalDtype(index), positions
