"""Small random CRM histories that exercise every corner of the feature definitions.

Times fall on a 6-hour grid starting on a Monday, so events land exactly on weekly as-of dates
(Mondays 00:00) and "at or before as_of" is tested at its boundary. Histories include stage
regressions, close-date pushes, amount changes, ties in ``changed_at``, deals without stage
history or activities, reps with one deal, unknown owners, accounts and products missing from
their tables, and custom attributes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.history import History, make_history

START = pd.Timestamp("2024-01-01")  # a Monday
STEP = pd.Timedelta(hours=6)
STAGES = ["Lead", "Qualify", "Demo", "Proposal", "Contract"]


def when(rng: np.random.Generator, low: int, high: int) -> pd.Timestamp:
    """A grid time between steps ``low`` and ``high`` (inclusive)."""
    return START + int(rng.integers(low, high + 1)) * STEP


def random_history(seed: int, n_deals: int = 24, horizon_days: int = 120) -> History:
    """A random history of ``n_deals`` deals over about ``horizon_days`` days."""
    rng = np.random.default_rng(seed)
    end = horizon_days * 4  # grid steps
    owners = ["R1", "R2", "R3", "R4", None]
    deals, stages, acts = [], [], []
    for i in range(n_deals):
        created = when(rng, 0, end - 40)
        length = int(rng.integers(1, 200))
        closed_at = created + length * STEP
        status = str(rng.choice(["won", "lost"]))
        if closed_at > START + end * STEP or rng.random() < 0.15:
            status, closed_at = "open", pd.NaT
        deal_id = f"D{i:03d}"
        deals.append(
            {
                "deal_id": deal_id,
                "created_at": created,
                "status": status,
                "closed_at": closed_at,
                "amount": float(rng.choice([1000.0, 2500.0, 4000.0]))
                if rng.random() < 0.8
                else np.nan,
                "owner_id": owners[int(rng.integers(0, len(owners)))] if i else "R9",
                "team": rng.choice(["East", "West", None]),
                "account_id": rng.choice(["A1", "A2", "A3", "A4", None]),
                "product": rng.choice(["Basic", "Pro", "Ghost", None]),
                "lead_source": rng.choice(["web", "referral", None]),
                "deal_type": rng.choice(["new_business", "renewal"]),
                "region": rng.choice(["EU", "US"]),
                "stage": "Demo",
                "expected_close_date": created + pd.Timedelta(days=30),
                "attr_competitor": rng.choice(["BigCo", "Upstart", None]),
                "attr_score": float(rng.normal(50, 10)) if rng.random() < 0.9 else np.nan,
            }
        )
        last = closed_at if pd.notna(closed_at) else START + end * STEP
        stages += stage_rows(rng, deal_id, created, last)
        for _ in range(int(rng.poisson(4))):
            t = created + int(rng.integers(0, max(1, (last - created) // STEP) + 1)) * STEP
            acts.append({"deal_id": deal_id, "occurred_at": t, "type": "call", "owner_id": "R1"})
    return make_history(
        pd.DataFrame(deals),
        stage_history=pd.DataFrame(stages, columns=STAGE_COLUMNS),
        activities=pd.DataFrame(acts, columns=["deal_id", "occurred_at", "type", "owner_id"]),
        reps=pd.DataFrame(
            {
                "owner_id": ["R1", "R2", "R3", "R9"],
                "team": ["East", "West", "East", "West"],
                "hired_at": [pd.Timestamp("2020-05-01"), pd.NaT, START, START + 200 * STEP],
            }
        ),
        accounts=pd.DataFrame(
            {
                "account_id": ["A1", "A2", "A3"],
                "industry": ["retail", None, "energy"],
                "employees": [40, 800, np.nan],
            }
        ),
        products=pd.DataFrame({"product": ["Basic", "Pro"], "list_price": [1200.0, 0.0]}),
        attributes={"competitor": "categorical", "score": "numeric"},
    )


STAGE_COLUMNS = ["deal_id", "stage", "changed_at", "amount", "expected_close_date"]


def stage_rows(
    rng: np.random.Generator, deal_id: str, created: pd.Timestamp, last: pd.Timestamp
) -> list[dict[str, Any]]:
    """A stage path with forward moves, regressions, pushes, amount changes and ties."""
    if rng.random() < 0.2:
        return []  # no stage history at all
    rows = []
    # Most deals start at the first stage; some enter the pipeline further down.
    t, level = created, 0 if rng.random() < 0.7 else int(rng.integers(1, 4))
    amount = float(rng.choice([1000.0, 2000.0, np.nan]))
    ecd = created.normalize() + pd.Timedelta(days=int(rng.integers(5, 40)))
    for _ in range(int(rng.integers(1, 8))):
        rows.append(
            {
                "deal_id": deal_id,
                "stage": STAGES[level],
                "changed_at": t,
                "amount": amount,
                "expected_close_date": ecd if rng.random() < 0.9 else pd.NaT,
            }
        )
        before, move = level, rng.random()
        if move < 0.45:
            level = min(level + 1, len(STAGES) - 1)
        elif move < 0.6:
            level = max(level - 1, 0)
        elif move < 0.8:
            ecd += pd.Timedelta(days=int(rng.integers(-5, 20)))
        else:
            amount = float(rng.choice([1000.0, 3000.0, np.nan]))
        # A tie now and then: the next stage entered at the same instant.
        tie = level != before and rng.random() < 0.15
        t += int(rng.integers(0 if tie else 1, 40)) * STEP
        if t > last:
            break
    return rows
