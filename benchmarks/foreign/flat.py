"""A flat CRM export that salesml/synth did not make, with the true win probabilities.

Written separately from ``salesml.synth`` on purpose, with other functional forms, so that the
win model is judged on data its author did not shape:

- amounts are log-normal; the chance of winning falls off with the log amount past a sweet
  spot (a hinge, not a line);
- the lead source shifts the log-odds by a fixed effect per source;
- the number of stakeholders (a custom numeric field) helps with diminishing returns
  (``log1p``);
- meetings, logged as activities in the deal's first five days, help (``sqrt``); other
  activities (emails, calls) are spread over the deal's life and carry nothing;
- a 30-level ``territory`` and a numeric ``lead_score`` are pure noise;
- the base rate drifts: it rises over the three years, with a yearly wave;
- no stage history; ``stage_share`` > 0 gives that share of deals a long-form stage history
  (the rest stay flat), as CRMs that switched on field history mid-way do.

The deals table looks like a real export: closed deals carry "Closed Won" / "Closed Lost" and
an expected close date equal to the closing date; open deals a pipeline stage and a planned
date. Files: ``deals.csv``, ``activities.csv``, ``stage_history.csv`` (when asked for) and
``mapping.yaml`` (for ``salesml import --format mapping``); ``truth.csv`` holds every deal's
true win probability (not imported).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

SOURCES = {"Webinar": 0.45, "Referral": 0.8, "Cold call": -0.7, "Paid ads": -0.25, "Partner": 0.3}
PRODUCTS = ("Core", "Plus", "Suite")
PIPELINE = ("Qualification", "Discovery", "Proposal", "Negotiation")
NOISE_ATTRIBUTES = ("territory", "lead_score")  # as the import names them
YEARS = 3.0


@dataclass(frozen=True)
class FlatExport:
    """Where the export was written, and every deal's true win probability."""

    folder: Path
    truth: pd.DataFrame  # deal_id, true_probability, created_at, closed_at, won
    noise: tuple[str, ...] = NOISE_ATTRIBUTES


def generate_flat(
    folder: Path,
    seed: int,
    deals: int = 6000,
    stage_share: float = 0.0,
    end: date = date(2026, 6, 30),
) -> FlatExport:
    """Write a flat export of ``deals`` deals ending at ``end`` into ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    stop = pd.Timestamp(end)
    start = stop - pd.Timedelta(days=int(365 * YEARS))
    offset = np.sort(rng.uniform(0, 365 * YEARS, deals))
    created = (start + pd.to_timedelta(offset, unit="D")).round("min")
    amount = np.round(rng.lognormal(9.3, 1.0, deals), 2)
    source = rng.choice(list(SOURCES), deals, p=[0.25, 0.15, 0.25, 0.2, 0.15])
    stakeholders = 1 + rng.poisson(1.6, deals)
    meetings = rng.poisson(1.2, deals)
    t = offset / 365.0
    logit = (
        -1.6
        + 0.35 * t
        + 0.25 * np.sin(2 * np.pi * t)
        - 0.55 * np.maximum(np.log(amount) - 9.0, 0.0)
        + np.array([SOURCES[s] for s in source])
        + 0.7 * np.log1p(stakeholders - 1)
        + 0.55 * np.sqrt(meetings)
    )
    p = 1.0 / (1.0 + np.exp(-logit))
    won = rng.random(deals) < p
    cycle = np.maximum(14.0, rng.lognormal(np.log(50.0), 0.55, deals) * np.where(won, 1.15, 0.9))
    closed = created + pd.to_timedelta(np.round(cycle * 24), unit="h")
    is_open = np.asarray(closed > stop)
    status = np.where(is_open, "Open", np.where(won, "Won", "Lost"))
    planned = created + pd.to_timedelta(np.round(rng.lognormal(np.log(50.0), 0.4, deals)), unit="D")
    table = pd.DataFrame(
        {
            "Deal Id": [f"FX-{i:06d}" for i in range(deals)],
            "Created": created.strftime("%Y-%m-%d %H:%M"),
            "Status": status,
            "Stage": np.where(
                is_open, rng.choice(PIPELINE, deals), np.where(won, "Closed Won", "Closed Lost")
            ),
            "Close Date": pd.Series(closed.strftime("%Y-%m-%d")).where(~is_open, ""),
            "Expected Close": np.where(
                is_open, planned.strftime("%Y-%m-%d"), closed.strftime("%Y-%m-%d")
            ),
            "Amount": amount,
            "Owner": rng.choice([f"rep{i:02d}" for i in range(20)], deals),
            "Product": rng.choice(PRODUCTS, deals),
            "Lead Source": source,
            "Stakeholders": stakeholders,
            "Territory": rng.choice([f"T{i:02d}" for i in range(30)], deals),
            "Lead Score": np.round(rng.normal(50, 15, deals), 1),
        }
    )
    table.to_csv(folder / "deals.csv", index=False)
    _activities(
        rng, table, created, np.where(is_open, np.datetime64(stop), closed), meetings, folder
    )
    staged = rng.random(deals) < stage_share
    if staged.any():
        _stage_history(rng, table, created, closed, is_open, won, staged, folder)
    (folder / "mapping.yaml").write_text(_mapping(bool(staged.any())), encoding="utf-8")
    truth = pd.DataFrame(
        {
            "deal_id": table["Deal Id"],
            "true_probability": p,
            "created_at": created,
            "closed_at": pd.Series(closed).where(~is_open),
            "won": np.where(is_open, np.nan, won.astype(float)),
        }
    )
    truth.to_csv(folder / "truth.csv", index=False)
    return FlatExport(folder, truth)


def _activities(
    rng: np.random.Generator,
    table: pd.DataFrame,
    created: pd.DatetimeIndex,
    last: np.ndarray,
    meetings: np.ndarray,
    folder: Path,
) -> None:
    """Meetings in the first five days (they matter); emails and calls over the deal's life."""
    ids = table["Deal Id"].to_numpy()
    life = (pd.DatetimeIndex(last) - created).total_seconds().to_numpy() / 86400.0
    rows = []
    deal = np.repeat(np.arange(len(ids)), meetings)
    rows.append(
        pd.DataFrame(
            {
                "Deal": ids[deal],
                "When": created[deal] + pd.to_timedelta(rng.uniform(0.1, 5.0, len(deal)), unit="D"),
                "Type": "Meeting",
            }
        )
    )
    other = rng.poisson(4.0, len(ids))
    deal = np.repeat(np.arange(len(ids)), other)
    rows.append(
        pd.DataFrame(
            {
                "Deal": ids[deal],
                "When": created[deal]
                + pd.to_timedelta(rng.uniform(0, 1, len(deal)) * life[deal], unit="D"),
                "Type": rng.choice(["Email", "Call"], len(deal)),
            }
        )
    )
    acts = pd.concat(rows, ignore_index=True)
    acts["When"] = pd.DatetimeIndex(acts["When"]).strftime("%Y-%m-%d %H:%M")
    acts.insert(0, "Activity Id", [f"AC-{i:07d}" for i in range(len(acts))])
    acts.to_csv(folder / "activities.csv", index=False)


def _stage_history(
    rng: np.random.Generator,
    table: pd.DataFrame,
    created: pd.DatetimeIndex,
    closed: pd.DatetimeIndex,
    is_open: np.ndarray,
    won: np.ndarray,
    staged: np.ndarray,
    folder: Path,
) -> None:
    """A long-form history for the ``staged`` deals: the pipeline stages in order, spread over
    the deal's life (lost deals stop early), then the closing stage."""
    rows = []
    for i in np.flatnonzero(staged).tolist():
        reach = len(PIPELINE) if won[i] else int(rng.integers(1, len(PIPELINE) + 1))
        end = closed[i] if not is_open[i] else created[i] + (closed[i] - created[i]) / 2
        fractions = np.r_[0.0, np.sort(rng.uniform(0.05, 0.9, reach - 1))]
        times = [created[i] + (end - created[i]) * float(f) for f in fractions]
        for stage, when in zip(PIPELINE[:reach], times, strict=False):
            rows.append((table["Deal Id"].iat[i], stage, when, table["Amount"].iat[i]))
        if not is_open[i]:
            rows.append(
                (
                    table["Deal Id"].iat[i],
                    "Closed Won" if won[i] else "Closed Lost",
                    closed[i],
                    table["Amount"].iat[i],
                )
            )
    frame = pd.DataFrame(rows, columns=["Deal", "Stage", "Changed", "Amount"])
    frame["Changed"] = pd.DatetimeIndex(frame["Changed"]).strftime("%Y-%m-%d %H:%M")
    frame.to_csv(folder / "stage_history.csv", index=False)


def _mapping(with_stages: bool) -> str:
    stages = (
        """  stage_history:
    file: stage_history.csv
    columns:
      deal_id: Deal
      stage: Stage
      changed_at: Changed
      amount: Amount
"""
        if with_stages
        else ""
    )
    return f"""version: 1
tables:
  deals:
    file: deals.csv
    columns:
      deal_id: Deal Id
      created_at: Created
      status: {{column: Status, map: {{Won: won, Lost: lost, Open: open}}}}
      stage: Stage
      closed_at: Close Date
      expected_close_date: Expected Close
      amount: Amount
      owner_id: Owner
      product: Product
      lead_source: Lead Source
    attributes:
      Stakeholders: numeric
      Territory: categorical
      Lead Score: numeric
{stages}  activities:
    file: activities.csv
    columns:
      activity_id: Activity Id
      deal_id: Deal
      occurred_at: When
      type: {{column: Type, map: {{Meeting: meeting, Email: email, Call: call}}}}
"""
