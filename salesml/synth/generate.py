"""``generate``: write a synthetic CRM history (canonical files + ground truth) to a folder."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from salesml.errors import ConfigError
from salesml.schemas import TABLES
from salesml.synth import catalog, effects, tables, truth
from salesml.synth.activities import make_activities
from salesml.synth.arrow import sequential_ids
from salesml.synth.deals import make_deals
from salesml.synth.events import make_stage_history
from salesml.synth.funnel import make_leads, make_nps, make_spend, make_web_sessions
from salesml.synth.timeline import Timeline
from salesml.synth.world import (
    accounts_columns,
    make_accounts,
    make_reps,
    products_columns,
    reps_columns,
)
from salesml.synth.writer import FORMATS, Format, canonical_table, file_path, write_table

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate` wrote: rows per canonical table and where."""

    out_dir: Path
    rows: dict[str, int]
    n_deals: int
    seed: int
    start_date: date
    end_date: date
    fmt: Format
    truth_dir: Path
    observed: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (for ``--json`` output)."""
        return {
            "out_dir": str(self.out_dir),
            "rows": dict(self.rows),
            "n_deals": self.n_deals,
            "seed": self.seed,
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
            "format": self.fmt,
            "truth_dir": str(self.truth_dir),
            "observed": dict(self.observed),
        }


def _whole(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def _clear(out_dir: Path) -> None:
    """Remove files a previous run wrote (either format), so no stale table is left behind."""
    for name in TABLES:
        for fmt in FORMATS:
            file_path(out_dir, name, fmt).unlink(missing_ok=True)
    for name in (truth.DEALS_TRUTH, truth.REPS_TRUTH, truth.EFFECTS_JSON):
        (out_dir / truth.TRUTH_DIR / name).unlink(missing_ok=True)


Writer = Callable[[str, dict[str, Any], dict[str, Any] | None], None]


def _simulate(
    seed: int,
    n_deals: int,
    timeline: Timeline,
    write: Writer,
    report: Progress,
    quarter_end: bool = True,
) -> truth.SimState:
    """Simulate the history step by step, handing each canonical table to ``write``."""
    # A sixth stream for web sessions leaves the first five (and their tables) as they were.
    rng_world, rng_deals, rng_stages, rng_acts, rng_funnel, rng_web = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)
    )
    report("world", 0.0)
    reps = make_reps(rng_world, n_deals, timeline)
    accounts = make_accounts(rng_world, n_deals)
    report("deals", 0.05)
    deals = make_deals(rng_deals, n_deals, timeline, reps, accounts, quarter_end)
    deal_ids = sequential_ids("D", n_deals, 7)
    report("stage_history", 0.15)
    history = make_stage_history(rng_stages, timeline, deals)
    canonical, extra = tables.deals_columns(deals, history, timeline, reps, accounts, deal_ids)
    write("deals", canonical, extra)
    write("stage_history", tables.stage_history_columns(history, timeline, deal_ids), None)
    regressed, pushes = history.regressed, history.pushes
    del history
    report("activities", 0.3)
    acts = make_activities(rng_acts, timeline, deals)
    write("activities", tables.activities_columns(acts, deals, timeline, reps, deal_ids), None)
    per_deal = acts.eventual_per_deal
    del acts
    report("leads", 0.6)
    leads = make_leads(rng_funnel, timeline, deals, reps)
    write("leads", tables.leads_columns(leads, timeline, reps, deal_ids), None)
    spend = make_spend(rng_funnel, timeline, leads)
    web = make_web_sessions(rng_web, timeline, leads)
    del leads
    write("marketing_spend", tables.spend_columns(spend, timeline), None)
    write("web_sessions", tables.web_sessions_columns(web, timeline), None)
    nps = make_nps(rng_funnel, timeline, deals)
    write("nps_responses", tables.nps_columns(nps, timeline, accounts), None)
    write("reps", reps_columns(reps, timeline), None)
    write("accounts", accounts_columns(accounts), None)
    write("products", products_columns(), None)
    return truth.SimState(reps, deals, regressed, pushes, per_deal, deal_ids)


def generate(
    n_deals: int,
    seed: int,
    out_dir: Path,
    end_date: date | None = None,
    fmt: Format = "parquet",
    progress: Progress | None = None,
    quarter_end: bool = True,
) -> SynthSummary:
    """Generate about three years of B2B CRM history ending at ``end_date``.

    Writes one file per canonical table (``<table>.parquet`` or ``<table>.csv``) into
    ``out_dir`` with exactly the canonical columns (deals also carry the custom attributes
    ``competitor``, ``noise_score`` and ``noise_label``), and the ground truth into
    ``out_dir/_truth/``. The export is taken at midnight at the start of ``end_date``: no event
    is stamped later. The same ``(n_deals, seed, end_date)`` gives identical tables.

    Args:
        n_deals: Number of deals (open and closed) in the history.
        seed: Random seed (>= 0).
        out_dir: Folder to write into (created if missing; previous outputs are replaced).
        end_date: Last day of the history; defaults to today.
        fmt: ``"parquet"`` or ``"csv"`` for the canonical tables (truth is always Parquet).
        progress: Called as ``progress(step, fraction_done)`` while generating.
        quarter_end: False switches the seasonal slips to a quarter's last month off (no
            quarter-end, summer or December push): a history the forecast must not find
            quarter-end peaks in.

    Returns:
        A :class:`SynthSummary` with the row count of every table.

    Raises:
        ConfigError: If an argument is out of range.
    """
    n_deals = _whole(n_deals, "n_deals", 1)
    seed = _whole(seed, "seed", 0)
    _check_format(fmt)
    end = end_date if end_date is not None else date.today()
    if isinstance(end, datetime):
        end = end.date()
    report: Progress = progress if progress is not None else (lambda step, frac: None)
    timeline = Timeline.ending(end)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear(out_dir)
    rows: dict[str, int] = {}
    # One background writer: Parquet encoding of a table overlaps with simulating the next.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="salesml-synth-writer") as pool:
        pending: list[Future[None]] = []

        def write(name: str, columns: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
            table = canonical_table(name, columns, extra)
            rows[name] = table.num_rows
            pending.append(pool.submit(write_table, table, file_path(out_dir, name, fmt), fmt))

        state = _simulate(seed, n_deals, timeline, write, report, quarter_end)
        report("writing", 0.85)
        for job in pending:
            job.result()
    report("truth", 0.95)
    observed = truth.observed_summary(state.deals, timeline)
    run = {
        "n_deals": n_deals,
        "seed": seed,
        "start_date": timeline.start.isoformat(),
        "end_date": end.isoformat(),
        "export_cutoff": f"{end.isoformat()} 00:00:00 (every event is stamped before it)",
        "currency": catalog.CURRENCY,
        "closed_deal_stage": "last open stage reached; no Closed Won/Lost rows",
        "observed": observed,
    }
    truth_dir = out_dir / truth.TRUTH_DIR
    truth.write_truth(
        truth_dir,
        truth.deals_truth(state, timeline),
        truth.reps_truth(state.reps, state.deals, timeline),
        effects.effects_document(state.deals.logit_sd, run),
    )
    report("done", 1.0)
    return SynthSummary(
        out_dir=out_dir,
        rows={name: rows[name] for name in TABLES},
        n_deals=n_deals,
        seed=seed,
        start_date=timeline.start,
        end_date=end,
        fmt=fmt,
        truth_dir=truth_dir,
        observed=observed,
    )
