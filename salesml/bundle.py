"""The win-model bundle: everything that turns a deal's features into a calibrated score.

One folder, no pickles: ``bundle.json`` (feature spec version, feature list with kinds,
category vocabularies, calibrator parameters, metadata) and ``win_model.txt`` (LightGBM's native
text format). ``WinBundle.load(path).predict(features)`` gives identical results before and after
a save/load round trip; the MLflow pyfunc (``salesml.bundle_model``) wraps exactly this object.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from salesml.calibration import Calibrator, calibrator_from_params
from salesml.errors import SalesmlError

BUNDLE_FORMAT = 1
BUNDLE_JSON = "bundle.json"
BOOSTER_TXT = "win_model.txt"
TIMING_DIR = "timing"
SINGLE_THREAD_ROWS = 64  # up to this many rows, LightGBM predicts on one thread


class BundleError(SalesmlError):
    """A bundle cannot be loaded or does not fit the data it is given."""


@dataclass
class WinBundle:
    """A trained win model: booster + calibrator + the feature contract it was trained on.

    Attributes:
        features: feature names in model order.
        kinds: feature name → "numeric" | "categorical".
        vocabularies: categorical feature → categories in training order.
        calibrator: maps the booster's raw score to a probability.
        booster: the LightGBM model; ``None`` for a constant (base-rate) model.
        base_rate: the training win rate (the constant model's answer).
        metadata: spec version, data window, metrics, flags (e.g. little signal).
    """

    features: list[str]
    kinds: Mapping[str, str]
    vocabularies: dict[str, list[str]]
    calibrator: Calibrator
    booster: lgb.Booster | None
    base_rate: float
    metadata: dict[str, Any] = field(default_factory=dict)
    # The close-timing model (salesml.timing.TimingBundle), saved in the ``timing/`` subfolder.
    timing: Any = None
    # Won-deal statistics, feature concepts and action thresholds fitted at training time
    # (salesml.explain.stats.fit_explainer, salesml.actions.fit_action_stats).
    explainer: dict[str, Any] = field(default_factory=dict)
    _ensemble: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def spec_version(self) -> str:
        return str(self.metadata.get("feature_spec_version", ""))

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
        for i, name in enumerate(self.features):
            out[:, i] = self.encode(name, features[name])
        return out

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

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        """The booster's log-odds margin of ``model_matrix`` rows (bitwise what ``raw_score``
        gives for the frame the rows come from; needs ``codes_match_booster``)."""
        assert self.booster is not None
        # A row's margin does not depend on the threads; on a few rows one thread saves the
        # OpenMP wake-up (~1 ms per call).
        threads: dict[str, Any] = {"num_threads": 1} if len(matrix) <= SINGLE_THREAD_ROWS else {}
        return np.asarray(self.booster.predict(matrix, raw_score=True, **threads), dtype=np.float64)

    @functools.cached_property
    def codes_match_booster(self) -> bool:
        """Whether the booster codes categoricals exactly as ``model_matrix`` does: its stored
        pandas categories are the bundle's vocabularies, in model order. Then a float matrix
        and the categorical frame of ``matrix`` give LightGBM the same numbers."""
        if self.booster is None:
            return False
        stored = getattr(self.booster, "pandas_categorical", None)
        categorical = [n for n in self.features if self.kinds[n] == "categorical"]
        if not categorical:
            return stored is None or len(stored) == 0
        if stored is None or len(stored) != len(categorical):
            return False
        return all(
            list(stored[i]) == list(self.vocabularies[name]) for i, name in enumerate(categorical)
        )

    def tree_ensemble(self) -> Any:
        """The booster flattened for ``salesml.explain.treeshap`` (built once, then cached)."""
        if self._ensemble is None:
            from salesml.explain.treeshap import from_booster

            if self.booster is None:
                raise BundleError("a constant (base-rate) bundle has no trees to explain")
            self._ensemble = from_booster(self.booster)
        return self._ensemble

    def raw_score(self, features: pd.DataFrame) -> np.ndarray:
        """The booster's log-odds margin (0 for a constant model)."""
        if self.booster is None:
            return np.zeros(len(features))
        if self.codes_match_booster:
            # A float matrix skips LightGBM's pandas conversion (~15 ms per call on one row).
            return self.margin(self.model_matrix(features))
        return np.asarray(
            self.booster.predict(self.matrix(features), raw_score=True), dtype=np.float64
        )

    def predict(
        self, features: pd.DataFrame, explain: bool = False, top: int | None = 5
    ) -> pd.DataFrame:
        """``win_probability`` (calibrated) and ``score`` (1–99) per row of ``features``.

        With ``explain=True`` also ``drivers`` and ``actions`` (JSON text per deal, see
        ``docs/drivers.md`` and ``docs/actions.md``; ``top`` drivers, ``None`` for all) and
        ``drivers_base`` (probability points: base + the contributions of every concept = 100 ×
        ``win_probability``).
        """
        if self.booster is None:
            probability = np.full(len(features), self.base_rate)
        else:
            probability = self.calibrator.predict(self.raw_score(features))
        out = pd.DataFrame(
            {"win_probability": probability, "score": to_score(probability)},
            index=features.index,
        )
        if explain:
            from salesml.explain.api import explain_columns

            out = out.join(explain_columns(self, features, top=top))
        return out

    def save(self, path: Path) -> Path:
        """Write ``bundle.json`` and ``win_model.txt`` into ``path`` (created if missing)."""
        path.mkdir(parents=True, exist_ok=True)
        doc = {
            "format": BUNDLE_FORMAT,
            "features": self.features,
            "kinds": dict(self.kinds),
            "vocabularies": self.vocabularies,
            "calibrator": self.calibrator.to_params(),
            "base_rate": self.base_rate,
            "has_booster": self.booster is not None,
            "metadata": self.metadata,
            "explainer": self.explainer,
        }
        (path / BUNDLE_JSON).write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
        if self.booster is not None:
            self.booster.save_model(str(path / BOOSTER_TXT))
        if self.timing is not None:
            self.timing.save(path / TIMING_DIR)
        return path

    @classmethod
    def load(cls, path: Path) -> WinBundle:
        """Read a bundle written by ``save``."""
        doc = read_document(path, BUNDLE_JSON, BUNDLE_FORMAT, "win-model bundle")
        booster = lgb.Booster(model_file=str(path / BOOSTER_TXT)) if doc["has_booster"] else None
        return cls(
            features=list(doc["features"]),
            kinds=dict(doc["kinds"]),
            vocabularies={k: list(v) for k, v in doc["vocabularies"].items()},
            calibrator=calibrator_from_params(doc["calibrator"]),
            booster=booster,
            base_rate=float(doc["base_rate"]),
            metadata=dict(doc["metadata"]),
            timing=_load_timing(path / TIMING_DIR),
            explainer=dict(doc.get("explainer", {})),
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
    doc: dict[str, Any] = json.loads(doc_path.read_text(encoding="utf-8"))
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
        categories = column.cat.categories.astype(str).tolist()
        lookup = np.fromiter(
            (positions.get(c, -1) for c in categories), dtype=np.int64, count=len(categories)
        )
        codes = np.asarray(column.array.codes)
        if len(lookup) == 0:
            return np.full(len(codes), -1, dtype=np.int64)
        mapped: np.ndarray = np.where(codes >= 0, lookup[np.maximum(codes, 0)], -1).astype(np.int64)
        return mapped
    values = column.to_numpy(dtype=object)
    present = pd.notna(values)
    out = np.full(len(values), -1, dtype=np.int64)
    if present.any():
        out[present] = index.get_indexer(pd.Index(values[present].astype(str)))
    return out


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


def _load_timing(path: Path) -> Any:
    """The timing model saved next to the win model, if there is one."""
    if not path.exists():
        return None
    from salesml.timing import TimingBundle  # imports this module: load it late

    return TimingBundle.load(path)


def to_score(probability: np.ndarray) -> np.ndarray:
    """Probabilities as the 1–99 score a CRM shows (rounded percent, clipped)."""
    scores: np.ndarray = np.clip(np.rint(np.asarray(probability) * 100), 1, 99).astype(np.int64)
    return scores
