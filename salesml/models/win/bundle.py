"""The win-model bundle: everything that turns a deal's features into a calibrated score.

One folder, no pickles: ``bundle.json`` (feature spec version, feature list with kinds,
category vocabularies, calibrator parameters, metadata) and ``win_model.txt`` (LightGBM's native
text format). ``WinBundle.load(path).predict(features)`` gives identical results before and after
a save/load round trip. The close-timing model is saved beside it (``timing/``) and the two are
composed, with drivers and actions, by ``salesml.scoring.Scorer``, which the MLflow pyfunc
(``salesml.scoring.pyfunc``) wraps.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from salesml.jsonio import dumps_exact
from salesml.models.calibration import Calibrator, calibrator_from_params
from salesml.models.contract import FeatureContract, read_document
from salesml.models.win.seen import SeenInputs

BUNDLE_FORMAT = 1
BUNDLE_JSON = "bundle.json"
BOOSTER_TXT = "win_model.txt"
SINGLE_THREAD_ROWS = 64  # up to this many rows, LightGBM predicts on one thread


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
    # Won-deal statistics, feature concepts and action thresholds fitted at training time
    # (salesml.explain.stats.fit_explainer, salesml.actions.fit_action_stats).
    explainer: dict[str, Any] = field(default_factory=dict)

    @property
    def spec_version(self) -> str:
        return str(self.metadata.get("feature_spec_version", ""))

    def constant(self) -> WinBundle:
        """The same bundle without its booster: the base rate for every deal."""
        return WinBundle(
            self.features,
            self.kinds,
            self.vocabularies,
            self.calibrator,
            None,
            self.base_rate,
            dict(self.metadata),
            explainer=dict(self.explainer),
        )

    @functools.cached_property
    def contract(self) -> FeatureContract:
        """The feature contract the booster was trained on."""
        return FeatureContract(self.features, self.kinds, self.vocabularies, self.spec_version)

    @functools.cached_property
    def seen(self) -> SeenInputs | None:
        """What the model saw in training (``salesml.models.win.seen``; None: not recorded)."""
        return SeenInputs.of(self.metadata, self.contract)

    def matrix(self, features: pd.DataFrame) -> pd.DataFrame:
        """The model's input (``FeatureContract.matrix``), inputs it never saw read as typical
        (``SeenInputs.read``)."""
        frame = self.contract.matrix(features)
        return frame if self.seen is None else self.seen.read_frame(frame)

    def model_matrix(self, features: pd.DataFrame) -> np.ndarray:
        """The model's input as LightGBM sees it (``FeatureContract.model_matrix``), inputs it
        never saw read as typical (``read``)."""
        return self.read(self.contract.model_matrix(features))

    def read(self, matrix: np.ndarray) -> np.ndarray:
        """``FeatureContract.model_matrix`` rows with every input the model never saw in
        training read as typical (``SeenInputs.read``; unchanged without the record)."""
        if self.seen is None:
            return matrix
        return self.seen.read(matrix, self.margin if self.booster is not None else None)

    def encode(self, name: str, column: pd.Series) -> np.ndarray:
        """One column of ``model_matrix`` (``FeatureContract.encode``)."""
        return self.contract.encode(name, column)

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

    def raw_score(self, features: pd.DataFrame, matrix: np.ndarray | None = None) -> np.ndarray:
        """The booster's log-odds margin (0 for a constant model); ``matrix``: the rows'
        ``model_matrix`` when the caller has it."""
        if self.booster is None:
            return np.zeros(len(features))
        if self.codes_match_booster:
            # A float matrix skips LightGBM's pandas conversion (~15 ms per call on one row).
            return self.margin(self.model_matrix(features) if matrix is None else matrix)
        return np.asarray(
            self.booster.predict(self.matrix(features), raw_score=True), dtype=np.float64
        )

    def predict(self, features: pd.DataFrame, matrix: np.ndarray | None = None) -> pd.DataFrame:
        """``win_probability`` (calibrated) and ``score`` (1–99) per row of ``features``
        (``matrix``: their ``model_matrix``, when the caller has it).

        Drivers and actions are added by the composite scorer (``salesml.scoring.Scorer``).
        """
        if self.booster is None:
            probability = np.full(len(features), self.base_rate)
        else:
            probability = self.calibrator.predict(self.raw_score(features, matrix))
        return pd.DataFrame(
            {"win_probability": probability, "score": to_score(probability)},
            index=features.index,
        )

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
        (path / BUNDLE_JSON).write_text(dumps_exact(doc, indent=2, default=str), encoding="utf-8")
        if self.booster is not None:
            self.booster.save_model(str(path / BOOSTER_TXT))
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
            explainer=dict(doc.get("explainer", {})),
        )


def to_score(probability: np.ndarray) -> np.ndarray:
    """Probabilities as the 1–99 score a CRM shows (rounded percent, clipped)."""
    scores: np.ndarray = np.clip(np.rint(np.asarray(probability) * 100), 1, 99).astype(np.int64)
    return scores
