"""Ground truth for evaluation: ``_truth/deals_truth.parquet``, ``reps_truth`` and effects.json.

The canonical importer ignores folders starting with ``_``, so the truth travels with the
export without ever being imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from salesml.synth import catalog
from salesml.synth.arrow import categorical
from salesml.synth.deals import Deals
from salesml.synth.timeline import BoolArray, IntArray, Timeline
from salesml.synth.world import Reps

TRUTH_DIR = "_truth"
DEALS_TRUTH = "deals_truth.parquet"
REPS_TRUTH = "reps_truth.parquet"
EFFECTS_JSON = "effects.json"


@dataclass(frozen=True)
class SimState:
    """What the truth files need once the canonical tables are out."""

    reps: Reps
    deals: Deals
    regressed: BoolArray
    pushes: IntArray
    activities_per_deal: IntArray
    deal_ids: pa.Array


def deals_truth(state: SimState, timeline: Timeline) -> pa.Table:
    """One row per deal: the latent drivers and how the deal really ends."""
    deals = state.deals
    secs = timeline.seconds(deals.closed) - timeline.seconds(deals.created)
    cycle = secs / 86_400.0  # on the exported (office) clock, like closed_at - created_at
    return pa.table(
        {
            "deal_id": state.deal_ids,
            "true_win_probability": deals.p_win,
            "win_logit": deals.logit,
            "eventual_status": categorical(np.where(deals.won, 0, 1), ("won", "lost")),
            "eventual_closed_at": timeline.timestamps(deals.closed),
            "true_cycle_days": cycle,
            "cycle_median_days": deals.cycle_median,
            "open_at_end": deals.is_open(timeline),
            "exit_stage": categorical(deals.exit_stage, catalog.STAGES),
            "rep_skill": deals.rep_skill,
            "engagement_z": deals.engagement_z,
            "engagement_rate": deals.engagement_rate,
            "eventual_activities": state.activities_per_deal,
            "amount_at_creation": deals.amount0,
            "price_ratio": deals.price_ratio,
            "discount": deals.discount,
            "quantity": deals.quantity,
            "account_employees": deals.employees,
            "regressed": state.regressed,
            "close_date_pushes": state.pushes,
            "owner_departed": deals.departed_owner,
        }
    )


def reps_truth(reps: Reps, deals: Deals, timeline: Timeline) -> pa.Table:
    """Every rep, departed ones included, with latent skill and leaving date."""
    left = deals.rep_left
    finite = np.isfinite(left)
    return pa.table(
        {
            "owner_id": reps.ids,
            "team": categorical(reps.team, catalog.TEAMS),
            "region": categorical(reps.region, catalog.REGIONS),
            "rep_skill": reps.skill,
            "hired_at": timeline.dates(reps.hired.astype(np.int64)),
            "departed": reps.departed,
            "left_at": timeline.dates(np.where(finite, left, 0).astype(np.int64), mask=~finite),
        }
    )


def write_truth(
    truth_dir: Path, deals_table: pa.Table, reps_table: pa.Table, document: dict[str, Any]
) -> None:
    """Write the truth files into ``truth_dir`` (created if missing)."""
    truth_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(deals_table, truth_dir / DEALS_TRUTH, store_schema=False)
    pq.write_table(reps_table, truth_dir / REPS_TRUTH, store_schema=False)
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    (truth_dir / EFFECTS_JSON).write_text(text, encoding="utf-8")


def observed_summary(deals: Deals, timeline: Timeline) -> dict[str, float]:
    """Headline rates of the generated history (recorded in effects.json)."""
    is_open = deals.is_open(timeline)
    closed = ~is_open
    n_closed = max(int(closed.sum()), 1)
    return {
        "open_share_at_end": round(float(is_open.mean()) if deals.n else 0.0, 4),
        "closed_win_rate": round(float(deals.won[closed].sum()) / n_closed, 4),
        "closed_mean_true_probability": round(float(deals.p_win[closed].sum()) / n_closed, 4),
        "mean_true_probability": round(float(deals.p_win.mean()) if deals.n else 0.0, 4),
    }
