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

**Flat exports** (``screen_deal_columns``). The deals table's ``amount``, ``stage`` and
``expected_close_date`` are export-time values; for a deal *without any stage history* they are
the only values there are, and they count as its creation-time values when the export shows them
filled alike on won, lost and open deals. Among the deals without stage history, a column is kept
only when there are at least ``MIN_DEALS`` won + lost and ``MIN_DEALS`` open deals to judge it
by, and it passes rules 1–3 above, and:

5. **Closed deals look like open ones**: for ``stage``, at least ``MIN_SHARED_STAGE`` of closed
   deals carry a stage some open deal also has (not "Closed Won" / "Closed Lost");
6. **Not the closing date**: for ``expected_close_date``, under ``MAX_AT_CLOSING`` of closed
   deals have it within a day of ``closed_at`` (CRMs set it to the closing date on closing);
7. **Does not move with age** (``stage`` and ``expected_close_date``): among the open deals,
   the value does not depend on how long the deal has been open (a creation-time value cannot;
   a stage reached or a close date pushed does): stage against the younger / older half by a
   chi-square test, dates by Spearman's rank correlation with age; ``p < AGE_P_VALUE``
   excludes the column, and so do fewer than ``2 * MIN_DEALS`` open deals showing it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, rankdata, spearmanr

from salesml.schemas import ATTRIBUTE_PREFIX

FILL_RATIO_LIMIT = 0.2
SEPARATION_AUC = 0.95
MIN_DEALS = 20
MIN_LEVEL_DEALS = 5
MAX_LEVELS = 200
MIN_SHARED_STAGE = 0.5
MAX_AT_CLOSING = 0.5
AGE_P_VALUE = 0.001
# Rule 7 is for the fields CRMs move as a deal progresses. Not the amount: the open deals that
# are old are those that have not closed yet, so a creation-time amount that lengthens the
# cycle would correlate with age too, and the amount is a flat export's strongest column.
AGE_CHECKED = ("stage", "expected_close_date")
# Deal-table columns a deal without stage history may be read from, and how they are screened.
DEAL_COLUMNS = {"amount": "numeric", "stage": "categorical", "expected_close_date": "date"}


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


def screen_deal_columns(
    deals: pd.DataFrame, flat: np.ndarray
) -> tuple[dict[str, str], dict[str, str]]:
    """``(kept, excluded)``, each ``{column: why}``, for the deals-table columns of
    ``DEAL_COLUMNS`` judged on the deals marked ``flat`` (those without any stage history)."""
    if not flat.any():
        return {}, {}
    rows = deals[flat]
    status = rows["status"].astype(object)
    closed_known = rows["closed_at"].notna()
    won = ((status == "won") & closed_known).to_numpy()
    lost = ((status == "lost") & closed_known).to_numpy()
    still_open = (status == "open").to_numpy()
    kept: dict[str, str] = {}
    excluded: dict[str, str] = {}
    n_closed, n_open = int((won | lost).sum()), int(still_open.sum())
    for column, kind in DEAL_COLUMNS.items():
        if column not in rows.columns or not rows[column].notna().any():
            excluded[column] = "never filled on deals without stage history"
            continue
        if n_closed < MIN_DEALS or n_open < MIN_DEALS or not won.any() or not lost.any():
            excluded[column] = (
                f"{n_closed} closed and {n_open} open deals without stage history: too few to "
                f"check that it is filled alike on won, lost and open deals (needs {MIN_DEALS} "
                "of each)"
            )
            continue
        values = rows[column]
        if kind == "date":
            created = pd.to_datetime(rows["created_at"])
            values = (pd.to_datetime(values) - created).dt.total_seconds() / 86400.0
        reason = _reason(values, "numeric" if kind == "date" else kind, won, lost, still_open)
        reason = reason or _export_time(rows, column, won | lost, still_open)
        if column in AGE_CHECKED:
            reason = reason or _moves_with_age(rows, values, kind, still_open)
        if reason:
            excluded[column] = reason
            continue
        filled = rows[column].notna().to_numpy()
        kept[column] = (
            f"filled alike on won ({filled[won].mean():.0%}), lost ({filled[lost].mean():.0%}) "
            f"and open ({filled[still_open].mean():.0%}) deals without stage history, and "
            "alone it does not decide the outcome: read as the creation-time value"
        )
    return kept, excluded


def _moves_with_age(
    rows: pd.DataFrame, values: pd.Series, kind: str, still_open: np.ndarray
) -> str | None:
    """Rule 7: among open deals, the value depends on the deal's age at export."""
    exported = pd.to_datetime(rows["created_at"]).max()
    age = (exported - pd.to_datetime(rows["created_at"][still_open])).dt.total_seconds()
    value = values[still_open]
    known = value.notna().to_numpy()
    if known.sum() < 2 * MIN_DEALS:
        return (
            f"only {int(known.sum())} open deals show it: too few to check that it does not "
            f"change as deals age (needs {2 * MIN_DEALS})"
        )
    age, value = age[known], value[known]
    if kind == "categorical":
        older = (age > age.median()).to_numpy()
        table = pd.crosstab(value.astype(str).to_numpy(), older)
        if table.shape[0] < 2 or table.shape[1] < 2:
            return None
        p = float(chi2_contingency(table.to_numpy())[1])
    else:
        p = float(spearmanr(pd.to_numeric(value, errors="coerce"), age).pvalue)
    if p < AGE_P_VALUE:
        return (
            f"on open deals it changes with the deal's age (p = {p:.0e}): it records progress "
            "since creation, not a creation-time value"
        )
    return None


def _export_time(
    rows: pd.DataFrame, column: str, closed: np.ndarray, still_open: np.ndarray
) -> str | None:
    """Rules 5 and 6: a value the CRM rewrites when the deal closes."""
    values = rows[column]
    if column == "stage":
        open_levels = set(values[still_open].dropna().astype(str))
        on_closed = values[closed].dropna().astype(str)
        shared = float(on_closed.isin(open_levels).mean()) if len(on_closed) else 1.0
        if shared < MIN_SHARED_STAGE:
            return (
                f"only {shared:.0%} of closed deals carry a stage an open deal has (closed deals "
                "show their closing stage): an export-time value"
            )
    if column == "expected_close_date":
        expected = pd.to_datetime(values[closed])
        gap = (expected - pd.to_datetime(rows["closed_at"][closed])).abs()
        at_closing = float((gap[expected.notna()] <= pd.Timedelta(days=1)).mean())
        if expected.notna().any() and at_closing >= MAX_AT_CLOSING:
            return (
                f"within a day of the closing date on {at_closing:.0%} of closed deals: set when "
                "the deal closed"
            )
    return None
