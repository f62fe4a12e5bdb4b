"""Action thresholds fitted at training time (stored in ``WinBundle.explainer["actions"]``).

Everything comes from labelled training snapshots (``deal_id``, ``as_of``, ``owner_id``,
``team``, ``stage``, the features and ``label_won``); nothing is computed from the deals being
scored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binom

MIN_REP_WON = 3  # won deals before a rep's typical won amount counts
MIN_SEGMENT = 8  # closed deals of a rep in a product / stage before coaching is suggested
COACHING_GAP = 0.15  # rep's win rate this far below the team's …
COACHING_P = 0.10  # … and unlikely under the team's rate (one-sided binomial)
RECENT_DAYS = 91  # process: the last quarter of labelled snapshots against the rest
MIN_RECENT = 30
MIN_DROP = 0.05


def _text(series: pd.Series) -> pd.Series:
    return series.astype("object").where(series.notna(), None)


def fit_action_stats(frame: pd.DataFrame) -> dict[str, Any]:
    """Rep typical won amounts, team capacities, coaching flags and the process stage drop."""
    labelled = frame[frame["label_won"].notna()].copy()
    for column in ("owner_id", "team", "stage", "product"):
        if column in labelled:
            labelled[column] = _text(labelled[column])
    last = labelled.sort_values("as_of").groupby("deal_id", sort=False).tail(1)
    won = last[last["label_won"] == 1]
    rep_amount = {
        str(owner): float(rows.median())
        for owner, rows in won.groupby("owner_id")["amount"]
        if rows.notna().sum() >= MIN_REP_WON
    }
    capacity: dict[str, dict[str, float]] = {}
    if "rep_open_deals" in labelled:
        per_rep = labelled.drop_duplicates(["owner_id", "as_of"])
        for team, rows in per_rep.groupby("team"):
            load = rows["rep_open_deals"].dropna().to_numpy(dtype=float)
            if len(load) < MIN_SEGMENT:
                continue
            median = float(np.median(load))
            capacity[str(team)] = {
                "median": median,
                "high": float(max(np.quantile(load, 0.9), 1.5 * median)),
                "low": float(min(np.quantile(load, 0.1), 0.5 * median)),
            }
    return {
        "rep_won_amount": rep_amount,
        "capacity": capacity,
        "coaching_product": _coaching(last, "product"),
        "coaching_stage": _coaching(labelled.drop_duplicates(["deal_id", "stage"]), "stage"),
        "process": _process(labelled.drop_duplicates(["deal_id", "stage"], keep="last")),
    }


def _coaching(rows: pd.DataFrame, by: str) -> dict[str, dict[str, float]]:
    """``"owner|segment"`` → rep rate, team rate, deals, for reps clearly below their team."""
    if by not in rows or rows.empty:
        return {}
    rows = rows[rows[by].notna() & rows["owner_id"].notna()]
    team = rows.groupby(["team", by])["label_won"].mean().to_dict()
    out: dict[str, dict[str, float]] = {}
    for (owner, segment, team_name), g in rows.groupby(["owner_id", by, "team"]):
        n, wins = len(g), float(g["label_won"].sum())
        if n < MIN_SEGMENT:
            continue
        theirs = float(team[(team_name, segment)])
        mine = wins / n
        if mine < theirs - COACHING_GAP and binom.cdf(wins, n, theirs) < COACHING_P:
            out[f"{owner}|{segment}"] = {"rate": mine, "team_rate": theirs, "deals": float(n)}
    return out


def _process(rows: pd.DataFrame) -> dict[str, Any]:
    """The stage whose conversion (share of deals seen in it that were won) fell most."""
    if rows.empty or "stage" not in rows:
        return {}
    end = rows["as_of"].max()
    recent = rows["as_of"] > end - pd.Timedelta(days=RECENT_DAYS)
    best: dict[str, Any] = {}
    for stage, g in rows[rows["stage"].notna()].groupby("stage"):
        new, old = g[recent.loc[g.index]], g[~recent.loc[g.index]]
        if len(new) < MIN_RECENT or len(old) < MIN_RECENT:
            continue
        drop = float(old["label_won"].mean() - new["label_won"].mean())
        if drop >= MIN_DROP and drop > best.get("drop", 0.0):
            best = {
                "stage": str(stage),
                "before": float(old["label_won"].mean()),
                "recent": float(new["label_won"].mean()),
                "drop": drop,
                "recent_deals": len(new),
            }
    return best
