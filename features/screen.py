"""The leakage screen for custom deal attributes.

A custom attribute is treated as known from the deal's creation, which is only true of fields
like "competitor" or "budget holder". Fields that are filled in, or decided, at closing ("loss
reason", "signed contract value") would hand the outcome to the model. They are recognised by
what the export shows, and left out:

1. **Filled at closing**: its fill rate on deals still open at export is under
   ``FILL_RATIO_LIMIT`` × its fill rate on closed deals (both groups with at least
   ``MIN_DEALS`` deals).
2. **Filled for one outcome**: its fill rate on one of won / lost is under
   ``FILL_RATIO_LIMIT`` × the other's.
3. **Decided by the outcome**: alone, it separates won from lost closed deals almost perfectly,
   ROC-AUC ≥ ``SEPARATION_AUC`` (or ≤ 1 − that). Numeric values rank the deals directly;
   categorical levels (missing is a level; levels with fewer than ``MIN_LEVEL_DEALS`` closed
   deals pooled) rank them by their win rate.
4. **Not a category**: a categorical attribute with more than ``MAX_LEVELS`` distinct values
   (an id or free text).

Also excluded: attributes never filled. With fewer than ``MIN_DEALS`` closed deals the rules
that need outcomes do not apply.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from salesml.schemas import ATTRIBUTE_PREFIX

FILL_RATIO_LIMIT = 0.2
SEPARATION_AUC = 0.95
MIN_DEALS = 20
MIN_LEVEL_DEALS = 5
MAX_LEVELS = 200


def screen_attributes(deals: pd.DataFrame, attributes: dict[str, str]) -> dict[str, str]:
    """``{attribute: reason}`` for every custom attribute the features must leave out."""
    status = deals["status"].astype(object)
    closed_known = deals["closed_at"].notna()
    won = ((status == "won") & closed_known).to_numpy()
    lost = ((status == "lost") & closed_known).to_numpy()
    still_open = (status == "open").to_numpy()
    excluded = {}
    for name, kind in sorted(attributes.items()):
        column = ATTRIBUTE_PREFIX + name
        values = deals[column] if column in deals.columns else pd.Series(np.nan, deals.index)
        reason = _reason(values, kind, won, lost, still_open)
        if reason:
            excluded[name] = reason
    return excluded


def _reason(
    values: pd.Series, kind: str, won: np.ndarray, lost: np.ndarray, still_open: np.ndarray
) -> str | None:
    filled = values.notna().to_numpy()
    if not filled.any():
        return "never filled"
    closed = won | lost
    if kind != "numeric":
        levels = values[filled].nunique()
        if levels > MAX_LEVELS:
            return f"{levels} distinct values: an id or free text, not a category"
    if closed.sum() < MIN_DEALS:
        return None
    fill_closed, fill_open = filled[closed].mean(), filled[still_open].mean()
    if still_open.sum() >= MIN_DEALS and fill_open < FILL_RATIO_LIMIT * fill_closed:
        return (
            f"filled on {fill_closed:.0%} of closed deals but only {fill_open:.0%} of deals "
            "still open: it is probably entered at closing (like a loss reason)"
        )
    if won.any() and lost.any():
        rates = {"won": filled[won].mean(), "lost": filled[lost].mean()}
        low, high = sorted(rates, key=rates.__getitem__)
        if rates[low] < FILL_RATIO_LIMIT * rates[high]:
            return (
                f"filled on {rates[high]:.0%} of {high} deals but only {rates[low]:.0%} of "
                f"{low} deals: it is probably entered for one outcome"
            )
        auc = _separation(values[closed], kind, won[closed])
        if auc is not None and max(auc, 1 - auc) >= SEPARATION_AUC:
            return (
                f"separates won from lost closed deals almost perfectly (ROC-AUC {auc:.2f}): "
                "its value is probably set by the outcome"
            )
    return None


def _separation(values: pd.Series, kind: str, won: np.ndarray) -> float | None:
    """ROC-AUC of the attribute alone for won vs lost (None when it cannot be measured)."""
    if kind == "numeric":
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        keep = ~np.isnan(numbers)
        if keep.sum() < MIN_DEALS:
            return None
        return _auc(numbers[keep], won[keep])
    level = values.astype(object).where(values.notna(), "\0missing").astype(str)
    sizes = level.map(level.value_counts())
    level = level.where(sizes >= MIN_LEVEL_DEALS, "\0rare")
    win_rate = pd.Series(won, index=level.index).groupby(level).transform("mean")
    return _auc(win_rate.to_numpy(dtype=np.float64), won)


def _auc(score: np.ndarray, positive: np.ndarray) -> float | None:
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
