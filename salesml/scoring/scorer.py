"""What a score is: win probability + close timing + drivers + actions, for every caller.

``Scorer`` composes the two model bundles (``salesml.models.win``, ``salesml.models.timing``)
with the drivers (``salesml.explain``) and the recommended actions (``salesml.actions``).
``score_features`` turns point-in-time feature rows (``features.build.build_features``) into
score rows with every column a CRM plugin shows. The nightly batch (local or Spark), the API
and the report all call it with the same ``Scorer``, so they return identical rows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesml.actions.engine import frame_values
from salesml.explain import text
from salesml.explain.api import explain_arrays
from salesml.kpis.pipeline import list_prices as product_list_prices
from salesml.models.contract import float_column, object_values
from salesml.models.registry import CHAMPION, WIN_MODEL_NAME, registered_artifact
from salesml.models.timing.bundle import TimingBundle
from salesml.models.win.bundle import WinBundle, to_score
from salesml.models.win.seen import MISSING_CATEGORY, Unknown

FEW_ROWS = 64  # up to this many rows (a live scoring batch), per-row lookups beat pandas
TIMING_DIR = "timing"  # the timing model's folder inside the win model's bundle folder


@dataclass(frozen=True)
class Scorer:
    """A win model with its timing model, and where they came from in the registry.

    Attributes:
        bundle: the calibrated win model.
        timing: the close-timing model trained with it (``None`` when it was not trained).
        version: the registered version (empty for a scorer that was never registered).
        alias: the registry alias it was loaded through.
        prices: the data's list prices (``priced``): where a deal has no amount, its expected
            revenue is win probability × its product's list price, the rule the KPI engine
            counts the open pipeline by (``salesml.kpis.pipeline``).
    """

    bundle: WinBundle
    timing: TimingBundle | None = None
    version: str = ""
    alias: str = ""
    prices: ListPrices | None = field(default=None, compare=False)

    def priced(self, prices: ListPrices | None) -> Scorer:
        """This scorer with the data's list prices (``ListPrices.of(history)``)."""
        return self if prices is self.prices else replace(self, prices=prices)

    def predict(
        self, features: pd.DataFrame, explain: bool = False, top: int | None = 5
    ) -> pd.DataFrame:
        """``win_probability`` (calibrated) and ``score`` (1–99) per row of ``features``.

        With ``explain=True`` also ``drivers`` and ``actions`` (JSON text per deal, see
        ``docs/drivers.md`` and ``docs/actions.md``; ``top`` drivers, ``None`` for all) and
        ``drivers_base`` (probability points: base + the contributions of every concept = 100 ×
        ``win_probability``).
        """
        return pd.DataFrame(self.columns(features, explain, top), index=features.index)

    def columns(
        self, features: pd.DataFrame, explain: bool = False, top: int | None = 5
    ) -> dict[str, Any]:
        """``predict``'s columns as arrays (no frame): what ``score_features`` reads."""
        return self._columns(features, explain, top)[0]

    def _columns(
        self, features: pd.DataFrame, explain: bool, top: int | None
    ) -> tuple[dict[str, Any], np.ndarray | None]:
        """``columns``, and the rows' model matrix as encoded, before inputs the model never
        saw are read as typical, when one was built (the timing model re-uses its columns,
        ``score_basis`` finds those inputs in it)."""
        bundle = self.bundle
        # One model matrix (and one margin) for the score, the contributions and the actions'
        # what-ifs; inputs the model never saw in training read as typical (``WinBundle.read``).
        # The timing model is handed the matrix as encoded, before that reading.
        encoded = bundle.contract.model_matrix(features) if bundle.codes_match_booster else None
        matrix = None if encoded is None else bundle.read(encoded)
        margin = None
        if bundle.booster is None:
            probability = np.full(len(features), bundle.base_rate)
        else:
            margin = bundle.raw_score(features, matrix)
            probability = bundle.calibrator.predict(margin)
        out: dict[str, Any] = {"win_probability": probability, "score": to_score(probability)}
        if explain:
            # Drivers and actions read what the model reads (and the owner, team and stage):
            # a feature the training screen dropped is not an input of the registered model,
            # so a caller going through MLflow never sends it, and both must agree.
            inputs = set(bundle.features)
            read = [i for i, c in enumerate(features.columns) if c in inputs or c in EXPLAIN_INFO]
            if len(read) < len(features.columns):
                # ``take`` gives ``features[names]`` at a fifth of its cost on a live row.
                features = features.take(read, axis=1)
            given = matrix
            if matrix is not encoded:  # some input was read as typical
                features = unseen_as_unknown(bundle, features, encoded)
                # The actions' rules read the deal's values from a matrix they are given (an
                # unknown close date, read as typical, would not ask for one): they and the
                # drivers read the frame, which ``model_matrix`` reads as this matrix is.
                given = None
            out |= explain_arrays(bundle, features, top=top, matrix=given, margin=margin)
        return out, encoded

    def save(self, path: Path) -> Path:
        """Write the win bundle into ``path`` and the timing model into ``path/timing``."""
        self.bundle.save(path)
        if self.timing is not None:
            self.timing.save(path / TIMING_DIR)
        return path

    @classmethod
    def load(cls, path: Path, version: str = "", alias: str = "") -> Scorer:
        """Read a folder written by ``save`` (the timing model when there is one)."""
        timing_path = path / TIMING_DIR
        timing = TimingBundle.load(timing_path) if timing_path.exists() else None
        return cls(WinBundle.load(path), timing, version, alias)


@dataclass(frozen=True)
class ListPrices:
    """The list price of each product, and of each deal's product, in one history."""

    by_product: pd.Series
    by_deal: pd.Series

    @classmethod
    def of(cls, history: Any) -> ListPrices:
        """From a ``features.history.History`` (its products and deals tables)."""
        prices = product_list_prices(history.products)
        deals = history.deals
        if "product" in deals and len(prices):
            by_deal = pd.Series(
                deals["product"].astype("object").map(prices).to_numpy(dtype="float64"),
                index=deals["deal_id"].astype(str),
            )
            by_deal = by_deal[~by_deal.index.duplicated()].dropna()
        else:
            by_deal = pd.Series(dtype="float64")
        return cls(prices, by_deal)

    @functools.cached_property
    def _price_of(self) -> dict[Any, float]:
        return {k: float(v) for k, v in self.by_product.items()}

    def for_rows(self, features: pd.DataFrame) -> np.ndarray:
        """Each row's list price: its ``product`` column's when the rows carry one (a what-if
        may change it), else its deal's product's; NaN where there is none."""
        if "product" in features and len(self.by_product):
            if len(features) <= FEW_ROWS:  # a live answer's row: a lookup, not a Series.map
                price = self._price_of
                # the values ``astype("object")`` gives, read by code from a categorical
                product = frame_values(features, "product")
                return np.asarray([price.get(v, np.nan) for v in product], dtype="float64")
            return (
                features["product"].astype("object").map(self.by_product).to_numpy(dtype="float64")
            )
        if not len(self.by_deal):
            return np.full(len(features), np.nan)
        return self.by_deal.reindex(features.index.astype(str)).to_numpy(dtype="float64")


def load_scorer(alias: str = CHAMPION) -> Scorer:
    """The scorer behind ``salesml-win@alias`` in the registry."""
    folder, version = registered_artifact(WIN_MODEL_NAME, alias, "bundle")
    return Scorer.load(folder, version, alias)


SCORE_COLUMNS = [
    "deal_id",
    "owner_id",
    "team",
    "win_probability",
    "score",
    "model_version",
    "as_of",
]
# Why and what next: the top drivers (JSON list: feature, concept, value, contribution in
# probability points, text), the recommended actions (JSON list: action, reason,
# expected_impact) and the points the drivers start from (see docs/drivers.md, docs/actions.md).
EXPLAIN_COLUMNS = ["drivers", "actions", "drivers_base"]
# Columns beside the model's features that drivers and actions read when a caller sends them.
EXPLAIN_INFO = ("owner_id", "team", "stage")
DRIVERS_SHOWN = 5
# Close timing (when the bundle carries a timing model): probabilities of closing *won* within
# the window, the expected close date given a win and its 80 % interval in days, and win
# probability × amount.
TIMING_COLUMNS = [
    "p_close_30d",
    "p_close_60d",
    "p_close_90d",
    "p_close_this_month",
    "p_close_this_quarter",
    "expected_close_date",
    "days_to_close_low",
    "days_to_close_high",
    "expected_revenue",
    "expected_revenue_basis",
]
# What ``expected_revenue`` multiplies the win probability by: the deal's ``amount``, else its
# product's ``list_price`` (the KPI engine's rule for the open pipeline), else nothing (null).
BASIS_AMOUNT, BASIS_LIST_PRICE = "amount", "list_price"
# What a win probability rests on (``score_basis``): the model's reading of the deal, the base
# rate (a constant model), or nothing the data supports — the deal has been open longer than
# any training deal was when it closed, an age no outcome was ever observed at
# (``score_warning`` then says so in words). The model stores that age at training
# (``OLDEST_CLOSE_KEY`` in its metadata); a model without it flags nothing. Or the model
# read an input it never saw in training — an unseen category, or no value where every training
# deal had one — as typical (``salesml.models.win.seen``): ``unseen_input``, the warning naming
# those inputs (an age beyond the observed ones takes the basis; the warning names both).
SCORE_BASIS_COLUMNS = ["score_basis", "score_warning"]
BASIS_MODEL, BASIS_BASE_RATE, BASIS_BEYOND = "model", "base_rate", "beyond_observed_ages"
BASIS_UNSEEN = "unseen_input"
OLDEST_CLOSE_KEY = "oldest_close_age_days"


def score_basis(
    features: pd.DataFrame, bundle: WinBundle, matrix: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``score_basis`` and ``score_warning`` per row of ``features`` (see ``BASIS_BEYOND``,
    ``BASIS_UNSEEN``); ``matrix``: their ``bundle.contract.model_matrix``, when the caller
    has it."""
    n = len(features)
    basis = np.full(n, BASIS_MODEL if bundle.booster is not None else BASIS_BASE_RATE, object)
    warning = np.full(n, None, dtype=object)
    if n == 0:
        return basis, warning
    if bundle.booster is not None and bundle.seen is not None:
        if matrix is None:
            matrix = bundle.contract.model_matrix(features)
        unknown = bundle.seen.unknown(matrix, features)
        for row, words in _unseen_words(bundle, unknown).items():
            basis[row] = BASIS_UNSEEN
            warning[row] = words
    oldest = bundle.metadata.get(OLDEST_CLOSE_KEY)
    if oldest is None or "age_days" not in features:
        return basis, warning
    age = float_column(features, "age_days")
    beyond = np.flatnonzero(age > float(oldest))  # NaN ages compare False: not flagged
    for i in beyond:
        words = (
            f"open {age[i]:.0f} days, longer than any training deal lasted before it closed "
            f"({float(oldest):.0f} days): no outcome was observed at this age, so the win "
            "probability is an extrapolation the data does not support"
        )
        warning[i] = words if basis[i] != BASIS_UNSEEN else f"{words}; {warning[i]}"
    basis[beyond] = BASIS_BEYOND
    return basis, warning


def _unseen_words(bundle: WinBundle, unknown: Unknown) -> dict[int, str]:
    """Row → the warning naming the inputs of ``unknown`` and how each was read."""
    seen = bundle.seen
    assert seen is not None
    parts: dict[int, list[str]] = {}
    for row, feature, value in zip(
        unknown.rows.tolist(), unknown.features, unknown.values, strict=True
    ):
        name = text.label(feature)
        name = name[0].lower() + name[1:]
        typical = seen.typical[feature]
        if bundle.kinds[feature] != "categorical":
            shown = text.fmt(feature, float(typical))
            said = f"{name} unknown (no training deal lacked it): read as typical, {shown}"
        else:
            if typical == MISSING_CATEGORY:
                reading = "as training deals without one"
            elif feature in seen.shares and bundle.codes_match_booster:
                kinds = len(seen.shares[feature])
                reading = f"at the middle of the deal's scores over the {kinds} values training saw"
            else:
                reading = f"as the most common, '{typical}'"
            said = (
                f"{name} '{value}' was never seen in training: read as unknown ({reading})"
                if value is not None
                else f"{name} unknown (no training deal lacked one): read {reading}"
            )
        parts.setdefault(row, []).append(said)
    return {row: "; ".join(said) for row, said in parts.items()}


def unseen_as_unknown(
    bundle: WinBundle, features: pd.DataFrame, encoded: np.ndarray | None
) -> pd.DataFrame:
    """``features`` with each category the model never saw blanked, so the drivers say the
    value is unknown (the model reads it as typical, not as the deal's own value)."""
    if encoded is None or bundle.seen is None:
        return features
    unknown = bundle.seen.unknown(encoded, features)
    blanked: dict[str, np.ndarray] = {}
    for row, feature, value in zip(
        unknown.rows.tolist(), unknown.features, unknown.values, strict=True
    ):
        if value is not None and bundle.kinds[feature] == "categorical":
            blanked.setdefault(feature, np.zeros(len(features), dtype=bool))[row] = True
    if not blanked:
        return features
    return features.assign(**{f: features[f].mask(rows) for f, rows in blanked.items()})


def score_features(features: pd.DataFrame, model: Scorer, as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per row of ``features`` (indexed by deal_id): ``SCORE_COLUMNS``,
    ``SCORE_BASIS_COLUMNS``, ``EXPLAIN_COLUMNS`` (empty for a constant base-rate model) and,
    with a timing model, ``TIMING_COLUMNS``."""
    return pd.DataFrame(score_columns(features, model, as_of), index=pd.RangeIndex(len(features)))


def score_columns(features: pd.DataFrame, model: Scorer, as_of: pd.Timestamp) -> dict[str, Any]:
    """``score_features``' columns before they become a frame: arrays of one value per row,
    or one value for every row (``model_version``, ``as_of``)."""
    explain = model.bundle.booster is not None
    predicted, matrix = model._columns(features, explain, DRIVERS_SHOWN)
    n = len(features)
    # The columns gathered first and the frame built once: inserting them one by one costs
    # ~0.3 ms a column, which a live one-row answer pays on every request.
    rows: dict[str, Any] = {"deal_id": features.index.astype(str)}
    for column in ("owner_id", "team"):
        rows[column] = (
            object_values(features[column])
            if column in features
            else np.full(n, None, dtype=object)
        )
    probability = np.asarray(predicted["win_probability"])
    rows["win_probability"] = probability
    rows["score"] = np.asarray(predicted["score"])
    rows["model_version"] = model.version
    rows["as_of"] = as_of
    basis, warning = score_basis(features, model.bundle, matrix)
    # Text columns as pandas' str dtype whatever their content: a slice without any warning
    # must give the same column as one with some (batch slices, workers, score runs).
    rows["score_basis"], rows["score_warning"] = pd.array(basis, "str"), pd.array(warning, "str")
    for column in EXPLAIN_COLUMNS:
        rows[column] = (
            np.asarray(predicted[column], dtype=object if column != "drivers_base" else None)
            if column in predicted
            else np.full(n, None, dtype=object)
        )
    timing = model.timing
    if timing is None or n == 0:
        return rows
    amount = float_column(features, "amount") if "amount" in features else np.full(n, np.nan)
    basis = np.full(len(amount), None, dtype=object)
    basis[~np.isnan(amount)] = BASIS_AMOUNT
    if model.prices is not None:
        price = model.prices.for_rows(features)
        priced = np.isnan(amount) & ~np.isnan(price)
        amount = np.where(priced, price, amount)
        basis[priced] = BASIS_LIST_PRICE
    encoded = None if matrix is None else (model.bundle, matrix)
    columns = timing.predict_columns(features, as_of, probability, amount, encoded)
    for column in TIMING_COLUMNS[:-1]:
        rows[column] = np.asarray(columns[column])
    rows["expected_revenue_basis"] = basis
    return rows
