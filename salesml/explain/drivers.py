"""Per-deal drivers: exact TreeSHAP in log-odds, mapped to probability points, grouped by concept.

The mapping (documented in ``docs/drivers.md``): with ``φ_0`` the model's expected margin and
``φ_j`` the TreeSHAP values of a deal whose margin is ``s = φ_0 + Σ φ_j``, and ``g`` the
calibrator (margin → shown probability), the base is ``g(φ_0)`` and each contribution is
``φ_j · r`` with ``r = (g(s) − g(φ_0)) / (s − φ_0)`` (the calibrator's secant slope; its
derivative when ``s = φ_0``). Then ``base + Σ contributions = g(s)``, the probability the deal
shows, for every deal; signs and ranking of the log-odds values are kept (``g`` never
decreases, so ``r ≥ 0``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from salesml.actions.engine import frame_values
from salesml.explain import text

if TYPE_CHECKING:
    from salesml.models.win.bundle import WinBundle

FloatArray = npt.NDArray[np.float64]
POINTS = 100.0  # contributions are probability points: percentage points of win probability
DEFAULT_TOP = 5
NATIVE_BELOW = 1_000  # fewer rows: LightGBM's own pred_contrib (no kernel start-up)
SMALL_BATCH = 64  # up to this many rows: one LightGBM thread
SLOPE_STEP = 1e-4


@dataclass(frozen=True)
class Contributions:
    """Every deal's contribution of every feature, in probability points.

    ``base + values.sum(axis=1) == 100 × probability`` row by row (up to float rounding).
    """

    base: float  # probability points of the "average" deal (g of the expected margin)
    points: FloatArray  # (deals, model features): ``values`` as an array
    probability: FloatArray  # the calibrated win probability each deal shows (0–1)
    phi: FloatArray  # (deals, model features): ``log_odds`` as an array
    expected_margin: float
    index: pd.Index  # the features' index (the frames' rows)
    features: list[str]  # the model features (the frames' columns)

    # The frames are built when read: the score path reads the arrays only (two one-row
    # frames cost ~0.5 ms a live answer).
    @functools.cached_property
    def values(self) -> pd.DataFrame:
        """Rows = deals (index of the features), columns = model features."""
        return pd.DataFrame(self.points, index=self.index, columns=self.features)

    @functools.cached_property
    def log_odds(self) -> pd.DataFrame:
        """The raw TreeSHAP values (margin units), as ``values``."""
        return pd.DataFrame(self.phi, index=self.index, columns=self.features)

    def by_concept(self, concepts: dict[str, str]) -> pd.DataFrame:
        """Sum of the contributions per concept (columns in first-seen feature order)."""
        names = [concepts.get(c, c) for c in self.values.columns]
        grouped = self.values.T.groupby(np.asarray(names), sort=False).sum().T
        return grouped


def log_odds_contributions(
    bundle: WinBundle,
    features: pd.DataFrame,
    engine: str = "auto",
    matrix: npt.NDArray[np.float64] | None = None,
) -> FloatArray:
    """``(n, n_features + 1)`` TreeSHAP values of the booster's margin (last: expected value).

    ``engine``: ``"native"`` (LightGBM ``pred_contrib``), ``"fast"`` (``treeshap``, exact and
    faster on large batches) or ``"auto"`` (fast from ``NATIVE_BELOW`` rows).
    """
    if bundle.booster is None:
        raise ValueError("a constant (base-rate) bundle has no contributions")
    if matrix is None:
        matrix = bundle.model_matrix(features)
    if engine == "native" or (engine == "auto" and len(features) < NATIVE_BELOW):
        # A row's values never depend on the thread count; for a few rows one thread saves the
        # OpenMP start-up (2.5 ms against 0.4 ms for one deal).
        if len(features) <= SMALL_BATCH:
            out = bundle.booster.predict(matrix, pred_contrib=True, num_threads=1)
        else:
            out = bundle.booster.predict(matrix, pred_contrib=True)
        return np.asarray(out, dtype=np.float64)
    from salesml.explain import treeshap

    return treeshap.shap_values(treeshap.ensemble_for(bundle.booster), matrix)


def secant_slopes(
    bundle: WinBundle, margin: FloatArray, shown: FloatArray, expected: float
) -> FloatArray:
    """``r`` per deal: ``(g(s) − g(φ_0)) / (s − φ_0)``, or ``g'(φ_0)`` numerically when equal.

    ``shown = g(margin)`` is passed in, computed from the booster's own margin: a step
    calibrator (isotonic, Venn-Abers) can jump between two margins that differ by 1e-15 (a deal
    whose margin sits exactly on a breakpoint), so the probability the deal shows is the one to
    match, not ``g`` of the summed contributions.
    """
    g = bundle.calibrator.predict
    base = float(g(np.array([expected]))[0])
    delta = margin - expected
    slope = np.empty_like(margin)
    far = np.abs(delta) > 1e-9
    slope[far] = (shown[far] - base) / delta[far]
    if (~far).any():
        near = margin[~far]
        slope[~far] = (g(near + SLOPE_STEP) - g(near - SLOPE_STEP)) / (2 * SLOPE_STEP)
    return slope


def contributions(
    bundle: WinBundle,
    features: pd.DataFrame,
    engine: str = "auto",
    matrix: npt.NDArray[np.float64] | None = None,
    margin: npt.NDArray[np.float64] | None = None,
) -> Contributions:
    """Probability-point contributions of every feature for every row of ``features``
    (``matrix``: their ``bundle.model_matrix``, ``margin``: their ``bundle.raw_score``, when
    the caller has them)."""
    if bundle.booster is None:
        zero = np.zeros((len(features), len(bundle.features)))
        p = np.full(len(features), bundle.base_rate)
        return Contributions(
            bundle.base_rate * POINTS,
            zero,
            p,
            zero.copy(),
            0.0,
            features.index,
            list(bundle.features),
        )
    phi = log_odds_contributions(bundle, features, engine, matrix)
    expected = float(phi[0, -1]) if len(phi) else _expected(bundle)
    if margin is None:
        margin = bundle.raw_score(features, matrix)
    shown = bundle.calibrator.predict(margin) if len(phi) else np.zeros(0)
    slope = secant_slopes(bundle, margin, shown, expected)
    base = float(bundle.calibrator.predict(np.array([expected]))[0])
    points = phi[:, :-1] * slope[:, None] * POINTS
    return Contributions(
        base * POINTS, points, shown, phi[:, :-1], expected, features.index, list(bundle.features)
    )


def _expected(bundle: WinBundle) -> float:
    assert bundle.booster is not None
    one = pd.DataFrame({name: [np.nan] for name in bundle.features})
    return float(log_odds_contributions(bundle, one, "native")[0, -1])


def concepts_of(bundle: WinBundle) -> dict[str, str]:
    """feature → concept (a custom attribute without metadata is its own concept)."""
    meta = bundle.explainer.get("features", {})
    return {
        n: str(meta.get(n, {}).get("concept", n.removeprefix("attr_"))) for n in bundle.features
    }


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None if pd.isna(value) else str(value)


def _typical(bundle: WinBundle, feature: str, stage: Any) -> dict[str, Any] | None:
    by_stage = bundle.explainer.get("won_by_stage", {})
    if isinstance(stage, str) and feature in by_stage.get(stage, {}):
        stats: dict[str, Any] = by_stage[stage][feature]
        return stats
    typical: dict[str, Any] | None = bundle.explainer.get("won", {}).get(feature)
    return typical


def _stages(features: pd.DataFrame) -> np.ndarray:
    """The stage at as_of: the model's ``current_stage``, else the info column ``stage``."""
    stage = np.full(len(features), None, dtype=object)
    for column in ("stage", "current_stage"):  # the later one wins where it is known
        if column in features:
            values = frame_values(features, column)
            known = pd.notna(values) & (values != "missing")
            stage[known] = values[known]
    return stage


def explain(
    bundle: WinBundle,
    features: pd.DataFrame,
    top: int | None = DEFAULT_TOP,
    contribution: Contributions | None = None,
) -> list[list[dict[str, Any]]]:
    """The top drivers of each deal, by concept, ordered by absolute contribution.

    Each driver: ``concept``; ``feature`` and ``value`` of the concept's feature that moved the
    score most in the concept's direction; ``contribution`` (probability points, the concept's
    sum); ``text``. ``top=None``
    keeps every concept, whose contributions then add up with the base to the shown score.
    """
    c = contribution if contribution is not None else contributions(bundle, features)
    if bundle.booster is None:
        return [[] for _ in range(len(features))]
    concepts = concepts_of(bundle)
    names = list(bundle.features)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(concepts[name], []).append(i)
    labels = list(groups)
    values = c.points
    totals = np.column_stack([values[:, idx].sum(axis=1) for idx in groups.values()])
    order = np.argsort(-np.abs(totals), axis=1, kind="stable")
    keep = (order if top is None else order[:, :top]).tolist()
    # Per concept and row: the feature that moved the score most in the concept's direction.
    lead = np.column_stack(
        [
            np.asarray(idx)[
                np.argmax(np.where(totals[:, [g]] >= 0, 1.0, -1.0) * values[:, idx], axis=1)
            ]
            for g, idx in enumerate(groups.values())
        ]
    ).tolist()
    totals_list = totals.tolist()
    stages = _stages(features)
    raw: dict[str, np.ndarray] = {}  # feature -> values as objects, for the leading ones only
    typical: dict[tuple[str, Any], dict[str, Any] | None] = {}
    out: list[list[dict[str, Any]]] = []
    for row in range(len(features)):
        drivers = []
        stage = stages[row]
        for g in keep[row]:
            total = totals_list[row][g]
            feature = names[lead[row][g]]
            if feature not in raw:
                raw[feature] = frame_values(features, feature)
            value = _json_value(raw[feature][row])
            key = (feature, stage if isinstance(stage, str) else None)
            if key not in typical:
                typical[key] = _typical(bundle, feature, stage)
            drivers.append(
                {
                    "concept": labels[g],
                    "feature": feature,
                    "value": value,
                    "contribution": total,
                    "text": text.phrase(feature, value, typical[key], total),
                }
            )
        out.append(drivers)
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(items: list[list[dict[str, Any]]]) -> list[str]:
    """One compact JSON text per deal (the ``drivers`` / ``actions`` column format).

    orjson writes the same text as ``json.dumps(x, separators=(",", ":"),
    ensure_ascii=False)`` for these values (NaN is already ``None``) about ten times faster.
    """
    dumps = orjson.dumps
    return [dumps(x, default=_json_default).decode() for x in items]
