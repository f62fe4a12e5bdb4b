"""What every batch engine runs on one slice of deals: score rows as they are stored.

The local engine (``serving.batch``) and the Spark engine (``serving.spark``) both call
``score_chunk``, which calls ``salesml.scoring.score_features``: the same rows whichever engine
ran.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from features.build import build_features
from features.history import History
from salesml.scoring import Scorer, score_features
from salesml.scoring.scorer import ListPrices
from serving.runs import HASH_COLUMN, to_storable


def model_version(models: Any) -> str:
    """The version a models object reports (``Scorer.version`` today)."""
    return str(models.version)


def priced(model: Any, history: History) -> Any:
    """``model`` with ``history``'s list prices (a ``Scorer``; anything else as it is): the
    expected revenue of a deal without an amount comes from its product's list price."""
    return model.priced(ListPrices.of(history)) if isinstance(model, Scorer) else model


def score_open_deals(history: History, model: Any, as_of: pd.Timestamp) -> pd.DataFrame:
    """One score row per deal open at ``as_of`` (see ``salesml.scoring``), sorted by deal_id."""
    features = build_features(history, as_of)
    rows = score_features(features, priced(model, history), as_of)
    return rows.sort_values("deal_id", ignore_index=True)


def score_chunk(
    features: pd.DataFrame, model: Any, as_of: pd.Timestamp, hashes: pd.Series | None = None
) -> pd.DataFrame:
    """Score rows of ``features`` as stored: nested columns as JSON text, plus ``input_hash``.

    The one function both engines run (Spark inside ``mapInPandas``). No rows in, no columns
    out (a model cannot score an empty frame).
    """
    if len(features) == 0:
        return pd.DataFrame()
    rows = score_features(features, model, as_of)
    stored, _ = to_storable(rows)
    if hashes is not None:
        stored[HASH_COLUMN] = hashes.reindex(features.index.astype(str)).to_numpy()
    return stored
