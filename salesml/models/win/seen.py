"""What the win model saw in training, and how a score reads an input it never saw.

LightGBM has no learned reading of a value its training rows never had. A numeric feature that
was never missing is stored with missing type ``None``: NaN is read as 0 (a deal without a
product had "amount 0 × list price": 6 % instead of 79 %). An unseen category, like a missing
one, goes to the right child of every categorical split, among whichever categories happen to
be there (a stage "Banana" read as a late stage: +24 points). Neither is a reading the data
supports.

Training records, per model feature, how many of its rows lacked a value and the value an
unknown one is read as (``SeenInputs.fit``; the bundle's metadata, ``SEEN_KEY``):

- a numeric feature never missing: its training median;
- a categorical one: the category ``"missing"`` when training deals lacked a value (the model
  learned what that means); else, deal by deal, the category at the weighted median of the
  deal's scores over every category training saw (weights: their training rows) — the deal
  in the middle of its possible readings. The most common category would move it as far as
  that category does (an unknown stage read as the most common, an early one: −20 points);
  the median reading keeps an unknown from being a large driver either way. (A bundle whose
  booster codes categoricals otherwise than its contract reads the most common category.)

``SeenInputs.read`` writes those readings into a model matrix before the booster, TreeSHAP and
the actions' what-ifs see it (``WinBundle.model_matrix``), so every path scores one row alike;
``SeenInputs.unknown`` says which inputs were read so (``salesml.scoring.score_basis`` words
the warning). A bundle without the record reads every value as LightGBM does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from salesml.models.contract import FeatureContract

SEEN_KEY = "seen_inputs"  # the record's key in the win bundle's metadata
MISSING_CATEGORY = "missing"  # the features' category for "no value" (``features.spec.MISSING``)


@dataclass(frozen=True)
class Unknown:
    """Inputs of some rows the model never saw, read as a typical value.

    Attributes:
        rows: row positions (into the scored rows), one per entry.
        features: the feature of each entry.
        values: the row's own value of each entry (None where it had none).
    """

    rows: np.ndarray
    features: list[str]
    values: list[Any]


@dataclass(frozen=True)
class SeenInputs:
    """Per model feature: the training rows that lacked a value, and what an unknown is read as.

    Attributes:
        missing: feature → training rows without a value (NaN, or the ``"missing"`` category).
        typical: feature → the value an unknown one is read as: a numeric feature's training
            median when it was never missing; a categorical feature's ``"missing"`` category when
            training had it, else its most common category.
    """

    missing: dict[str, int]
    typical: dict[str, Any]
    shares: dict[str, dict[str, int]] = field(default_factory=dict)
    contract: FeatureContract | None = field(default=None, compare=False)

    @classmethod
    def fit(cls, rows: pd.DataFrame, contract: FeatureContract) -> SeenInputs:
        """The record of the training ``rows`` a booster on ``contract`` was fitted on."""
        missing: dict[str, int] = {}
        typical: dict[str, Any] = {}
        shares: dict[str, dict[str, int]] = {}
        for name in contract.features:
            column = rows[name]
            if contract.kinds[name] == "categorical":
                vocabulary = contract.vocabularies[name]
                text = column.astype("object")
                lacking = text.isna() | (text == MISSING_CATEGORY)
                missing[name] = int(lacking.sum())
                counts = text[~lacking].astype(str).value_counts()
                counts = counts[counts.index.isin(vocabulary)]
                if MISSING_CATEGORY in vocabulary:
                    typical[name] = MISSING_CATEGORY
                elif len(counts):
                    # The most common; ties go to the first in vocabulary order.
                    top = counts[counts == counts.max()].index
                    typical[name] = min(top, key=vocabulary.index)
                    shares[name] = {str(k): int(v) for k, v in counts.items()}
            else:
                values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
                known = ~np.isnan(values)
                missing[name] = int((~known).sum())
                if missing[name] == 0 and known.any():
                    typical[name] = float(np.median(values[known]))
        return cls(missing, typical, shares, contract)

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON values (the bundle's ``metadata[SEEN_KEY]``)."""
        return {"missing": self.missing, "typical": self.typical, "shares": self.shares}

    @classmethod
    def of(cls, metadata: dict[str, Any], contract: FeatureContract) -> SeenInputs | None:
        """The record a bundle's ``metadata`` holds, for its ``contract`` (None: none)."""
        doc = metadata.get(SEEN_KEY)
        if not isinstance(doc, dict):
            return None
        shares = {k: dict(v) for k, v in doc.get("shares", {}).items()}
        return cls(dict(doc.get("missing", {})), dict(doc.get("typical", {})), shares, contract)

    @functools.cached_property
    def _fill(self) -> tuple[np.ndarray, np.ndarray]:
        """Model-matrix columns an unknown value is re-read in, and the value written there."""
        assert self.contract is not None
        columns, values = [], []
        for i, name in enumerate(self.contract.features):
            if name not in self.typical:
                continue  # a numeric feature training lacked: LightGBM learned its NaN
            if self.contract.kinds[name] == "categorical":
                vocabulary = self.contract.vocabularies[name]
                if self.typical[name] not in vocabulary:
                    continue
                values.append(float(vocabulary.index(self.typical[name])))
            else:
                values.append(float(self.typical[name]))
            columns.append(i)
        return np.asarray(columns, dtype=np.int64), np.asarray(values, dtype=np.float64)

    @functools.cached_property
    def _spread(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Column → the codes of the categories training saw and their row counts, for each
        categorical feature no training row lacked (``read`` with a margin)."""
        assert self.contract is not None
        out = {}
        for i, name in enumerate(self.contract.features):
            vocabulary = self.contract.vocabularies.get(name, [])
            counts = {k: v for k, v in self.shares.get(name, {}).items() if k in vocabulary}
            if counts:
                codes = np.asarray([vocabulary.index(k) for k in counts], dtype=np.float64)
                out[i] = codes, np.asarray(list(counts.values()), dtype=np.float64)
        return out

    def read(
        self, matrix: np.ndarray, margin: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> np.ndarray:
        """``matrix`` (``FeatureContract.model_matrix`` rows) with every value the model never
        saw replaced by its typical reading; the same array when there is none.

        With ``margin`` (the booster's, on such rows), a categorical feature no training row
        lacked is read, row by row, as the category at the weighted median of the row's
        margins over every category training saw (weights: their training rows): the deal at
        the middle of its readings, where the most common category could move it far (an
        early stage read for an unknown one: −20 points)."""
        columns, values = self._fill
        if not columns.size or not len(matrix):
            return matrix
        block = matrix[:, columns]
        unknown = np.isnan(block)
        if not unknown.any():
            return matrix
        out = matrix.copy()
        spread = self._spread if margin is not None else {}
        # The most common first, so each categorical is then read with the others read.
        out[:, columns] = np.where(unknown, values, block)
        for j in [j for j, col in enumerate(columns.tolist()) if col in spread]:
            rows = np.flatnonzero(unknown[:, j])
            if rows.size and margin is not None:
                out[rows, columns[j]] = _median_reading(out[rows], int(columns[j]), spread, margin)
        return out

    def read_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``read`` for a ``FeatureContract.matrix`` frame (a booster that codes categoricals
        otherwise than the contract is handed this frame instead)."""
        columns, _ = self._fill
        if not columns.size or not len(frame):
            return frame
        names = [frame.columns[i] for i in columns]
        if not frame[names].isna().to_numpy().any():
            return frame
        return frame.fillna({name: self.typical[name] for name in names})

    def unknown(self, matrix: np.ndarray, features: pd.DataFrame) -> Unknown:
        """The entries of ``matrix`` (unread ``model_matrix`` rows of ``features``) that
        ``read`` re-reads: an unseen category, or no value where training always had one."""
        assert self.contract is not None
        columns, _ = self._fill
        names = self.contract.features
        hits: list[tuple[int, int]] = []
        if columns.size and len(matrix):
            rows, where = np.nonzero(np.isnan(matrix[:, columns]))
            hits = sorted(zip(rows.tolist(), columns[where].tolist(), strict=True))
        values = [_value(features[names[j]].iloc[r]) for r, j in hits]
        return Unknown(
            np.asarray([r for r, _ in hits], dtype=np.int64), [names[j] for _, j in hits], values
        )


def _value(value: Any) -> Any:
    """A row's own value as a plain one (None: no value)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, str) and value == MISSING_CATEGORY:
        return None
    return value


def _median_reading(
    rows: np.ndarray,
    column: int,
    spread: dict[int, tuple[np.ndarray, np.ndarray]],
    margin: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Per row: the code at the weighted median of its margins over ``spread[column]``."""
    codes, weights = spread[column]
    k = len(codes)
    stacked = np.repeat(rows, k, axis=0)
    stacked[:, column] = np.tile(codes, len(rows))
    margins = np.asarray(margin(stacked), dtype=np.float64).reshape(len(rows), k)
    order = np.argsort(margins, axis=1, kind="stable")
    cumulative = np.cumsum(weights[order], axis=1)
    at = np.argmax(cumulative >= cumulative[:, -1:] / 2, axis=1)
    chosen: np.ndarray = codes[order[np.arange(len(rows)), at]]
    return chosen
