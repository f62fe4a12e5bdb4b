"""A plain-pandas reference implementation of ``salesml.kpis.compute_kpis``.

It loads the warehouse tables into DataFrames and computes the same JSON, written the obvious
way (one block per subset of deals, window-style logic with sort + groupby) and independently
of the SQL engine. It is the oracle the tests compare the engine with on random warehouses,
and the peer ``make bench`` measures the engine against. Definitions: docs/kpis.md.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from salesml.errors import SalesmlError

STEP = {"month": 1, "quarter": 3, "year": 12}
LAG = {"month": 12, "quarter": 4, "year": 1}
COLUMNS = {
    "deals": [
        "deal_id", "created_at", "status", "closed_at", "amount", "currency", "owner_id",
        "account_id", "product", "lead_source", "deal_type", "team", "region",
    ],
    "stage_history": ["deal_id", "stage", "changed_at"],
    "reps": ["owner_id", "name", "team", "region"],
    "accounts": ["account_id", "employees"],
    "products": ["product", "list_price"],
    "leads": ["lead_id", "created_at", "source", "owner_id", "converted_at", "deal_id"],
    "marketing_spend": ["period", "channel", "amount"],
    "web_sessions": ["period", "channel", "sessions", "key_events"],
    "nps_responses": ["account_id", "responded_at", "score"],
}  # fmt: skip
TERMINAL = re.compile(r"^(closed[\s_-]*(won|lost)?|won|lost)$", re.IGNORECASE)


def load_frames(con: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    """The columns the KPIs need, one DataFrame per table (empty when the table is missing)."""
    present = {
        str(r[0])
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND table_schema = 'main'"
        ).fetchall()
    }
    frames = {}
    for table, cols in COLUMNS.items():
        if table in present:
            frames[table] = con.execute(f"SELECT {', '.join(cols)} FROM {table}").df()
        else:
            frames[table] = pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    return frames


def reference_kpis(
    con: duckdb.DuckDBPyConnection,
    by: str | None = None,
    period: str = "quarter",
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """Load the warehouse into pandas and compute the KPI JSON (same contract as the engine)."""
    return kpis_from_frames(load_frames(con), by, period, as_of)


def _blank(s: pd.Series) -> pd.Series:
    """Strings with '' as missing."""
    return s.where(s.notna() & (s.astype(object) != ""), None).astype(object)


def _pidx(ts: pd.Series, unit: str) -> pd.Series:
    """Month index (year * 12 + month - 1) of the start of each timestamp's period."""
    step = STEP[unit]
    months = ts.dt.year * 12 + ts.dt.month - 1
    out: pd.Series = (months // step) * step
    return out


def _pdate(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def _r(value: float | None, digits: int) -> float | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return round(float(value), digits)


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return float(a) / float(b)


def _segment(employees: pd.Series) -> pd.Series:
    out = pd.Series("Unknown", index=employees.index, dtype=object)
    e = pd.to_numeric(employees, errors="coerce")
    out[e < 100] = "SMB"
    out[(e >= 100) & (e < 1000)] = "Mid-Market"
    out[e >= 1000] = "Enterprise"
    return out


def _nps(scores: pd.Series) -> float | None:
    if len(scores) == 0:
        return None
    return round(100.0 * (int((scores >= 9).sum()) - int((scores <= 6).sum())) / len(scores), 2)


def kpis_from_frames(
    frames: Mapping[str, pd.DataFrame],
    by: str | None = None,
    period: str = "quarter",
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """The KPI JSON from in-memory tables (see ``load_frames`` for the columns)."""
    deals, at = _deals_and_as_of(frames["deals"], as_of)
    d, undated = _deals_known_at(deals, at)
    reps = frames["reps"].drop_duplicates("owner_id")
    accounts = frames["accounts"].drop_duplicates("account_id")
    d["g"] = _group_of(d, by, reps, accounts)
    counts = d["currency"].dropna().value_counts()
    currencies = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    currency = currencies[0][0] if currencies else "USD"
    warnings = []
    if undated:
        warnings.append(f"{undated} undated")
    if len(currencies) > 1:
        warnings.append("currencies")
    ctx = _context(frames, deals, d, at, by, period)
    if ctx.closes_from is None or ctx.grid[0] < ctx.closes_from:
        warnings.append("periods before the first close")
    new = d[d["new_customer"] & (d["st"] == "won")]
    if len(ctx.web) and not set(ctx.web["channel"]) & set(new["lead_source"].dropna()):
        warnings.append("web channels")
    groups = []
    if by is not None:
        names = reps.set_index("owner_id")["name"]
        for g, sub in sorted(d.groupby("g"), key=lambda kv: str(kv[0])):
            head: dict[str, Any] = {"group": str(g)}
            if by == "rep":
                label = names.get(g)
                head["label"] = None if label is None or pd.isna(label) else str(label)
            groups.append(head | _block(ctx, sub, str(g)))
    return {
        "as_of": at.to_pydatetime().isoformat(),
        "period": period,
        "by": by,
        "currency": currency,
        "warnings": warnings,
        "overall": _block(ctx, d, None),
        "groups": groups,
    }


def _deals_and_as_of(
    frame: pd.DataFrame, as_of: datetime | None
) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Every deal with its timestamps parsed, and as_of (naive UTC; the latest event if None)."""
    deals = frame.copy()
    if deals.empty:
        raise SalesmlError("no deals in the warehouse; import an export first")
    for c in ("created_at", "closed_at"):
        deals[c] = pd.to_datetime(deals[c])
    latest = max(deals["created_at"].max(), deals["closed_at"].max())
    at = pd.Timestamp(latest if as_of is None else as_of)
    if at.tzinfo is not None:
        at = at.tz_convert("UTC").tz_localize(None)
    return deals, at


def _deals_known_at(deals: pd.DataFrame, at: pd.Timestamp) -> tuple[pd.DataFrame, int]:
    """Deals created by ``at`` with their status then (``st``), and how many closed deals lack
    a close date (left out of every figure)."""
    d = deals[deals["created_at"] <= at].copy()
    if d.empty:
        raise SalesmlError("no deals created on or before as_of")
    closed = d["status"].isin(["won", "lost"]) & (d["closed_at"] <= at)
    is_open = (d["status"] == "open") | (d["closed_at"] > at)
    st = pd.Series(None, index=d.index, dtype=object)
    st[is_open] = "open"
    st[closed] = d["status"][closed].astype(object)
    d["st"] = st
    undated = int(d["st"].isna().sum())
    d = d[d["st"].notna()].copy()  # won/lost without closed_at: left out of every figure
    if d.empty:
        raise SalesmlError("every deal created on or before as_of lacks closed_at")
    d.loc[~closed, "closed_at"] = pd.NaT
    return d, undated


def _group_of(
    d: pd.DataFrame, by: str | None, reps: pd.DataFrame, accounts: pd.DataFrame
) -> pd.Series | None:
    if by is None:
        return None
    if by == "rep":
        return _blank(d["owner_id"]).fillna("Unassigned")
    if by in ("team", "region"):
        rep_value = d["owner_id"].map(reps.set_index("owner_id")[by])
        return _blank(d[by]).fillna(_blank(rep_value)).fillna("Unassigned")
    if by == "product":
        return _blank(d["product"]).fillna("Unknown")
    return _segment(d["account_id"].map(accounts.set_index("account_id")["employees"]))


@dataclass(frozen=True)
class _Context:
    """What a block of figures (overall, or one group's) reads besides its own deals."""

    by: str | None
    period: str
    grid: list[int]  # period starts (month indexes) from the first event to as_of
    complete: list[bool]  # per grid period: over by as_of
    closes_from: int | None  # the first period any deal closed in (earlier ones: unknown)
    spend: pd.DataFrame  # marketing spend up to as_of, with its period ``p``
    web: pd.DataFrame  # web sessions up to as_of
    nps: pd.DataFrame  # NPS responses up to as_of
    nps_segment: pd.Series  # segment of each response's account
    nps_by_group: pd.DataFrame  # responses joined to the groups of their accounts' deals
    prices: pd.Series  # list price by product
    leads: pd.DataFrame  # leads up to as_of, with conversion flags, source and group
    stages: list[str]  # the funnel's stage order
    advanced: Any  # per (deal, stage entered): its group and whether it advanced


def _context(
    frames: Mapping[str, pd.DataFrame],
    deals: pd.DataFrame,
    d: pd.DataFrame,
    at: pd.Timestamp,
    by: str | None,
    period: str,
) -> _Context:
    """Everything the blocks share; adds the period, cycle and new-customer columns to ``d``."""
    spend = frames["marketing_spend"].copy()
    spend["period"] = pd.to_datetime(spend["period"])
    spend = spend[spend["period"] <= at.normalize()]
    web = frames["web_sessions"].copy()
    web = web[pd.to_datetime(web["period"]) <= at.normalize()]
    nps = frames["nps_responses"].copy()
    nps["responded_at"] = pd.to_datetime(nps["responded_at"])
    nps = nps[nps["responded_at"] <= at]
    grid, complete = _grid(d, spend, nps, at, period)
    d["p"] = _pidx(d["closed_at"], period)
    d["cycle"] = (d["closed_at"].dt.normalize() - d["created_at"].dt.normalize()).dt.days
    d["new_customer"] = _new_customers(d)
    spend["p"] = _pidx(spend["period"], period)
    employees = frames["accounts"].drop_duplicates("account_id").set_index("account_id")
    pairs = d.loc[d["account_id"].notna(), ["g", "account_id"]].drop_duplicates()
    stages, advanced = _funnel(frames["stage_history"], d, at)
    return _Context(
        by=by,
        period=period,
        grid=grid,
        complete=complete,
        closes_from=None if d["p"].isna().all() else int(d["p"].min()),
        spend=spend,
        web=web,
        nps=nps,
        nps_segment=_segment(nps["account_id"].map(employees["employees"])),
        nps_by_group=nps.merge(pairs, on="account_id"),
        prices=frames["products"].drop_duplicates("product").set_index("product")["list_price"],
        leads=_leads(frames, deals, at, by),
        stages=stages,
        advanced=advanced,
    )


def _grid(
    d: pd.DataFrame, spend: pd.DataFrame, nps: pd.DataFrame, at: pd.Timestamp, period: str
) -> tuple[list[int], list[bool]]:
    """Period starts from the first deal, spend or response to as_of, and which are over."""
    step = STEP[period]
    starts = [int(_pidx(d["created_at"], period).min())]
    if len(spend):
        starts.append(int(_pidx(spend["period"], period).min()))
    if len(nps):
        starts.append(int(_pidx(nps["responded_at"], period).min()))
    at_idx = (at.year * 12 + at.month - 1) // step * step
    grid = list(range(min(starts), at_idx + 1, step))
    return grid, [_pdate(p + step) - timedelta(days=1) <= at.date() for p in grid]


def _new_customers(d: pd.DataFrame) -> pd.Series:
    """An account's first won deal; accountless new-business wins count alone."""
    won = d[d["st"] == "won"].sort_values(["closed_at", "deal_id"])
    firsts = won[won["account_id"].notna()].drop_duplicates("account_id")
    kind = won["deal_type"].astype(object).str.lower().str.replace("[^a-z]", "", regex=True)
    loose = won[
        won["account_id"].isna()
        & (won["deal_type"].isna() | kind.isin(["newbusiness", "new", "newlogo", "newcustomer"]))
    ]
    out = pd.Series(False, index=d.index)
    out.loc[firsts.index.append(loose.index)] = True
    return out


def _leads(
    frames: Mapping[str, pd.DataFrame], deals: pd.DataFrame, at: pd.Timestamp, by: str | None
) -> pd.DataFrame:
    """Leads created by as_of with conversion flags (``conv``, ``cust``), source and group."""
    leads = frames["leads"].copy()
    for c in ("created_at", "converted_at"):
        leads[c] = pd.to_datetime(leads[c])
    leads = leads[leads["created_at"] <= at]
    dd = deals.set_index("deal_id")
    deal_created = leads["deal_id"].map(dd["created_at"])
    deal_won = leads["deal_id"].map((dd["status"] == "won") & (dd["closed_at"] <= at))
    conv_by_date = leads["converted_at"] <= at
    conv_by_deal = leads["deal_id"].notna() & (deal_created.isna() | (deal_created <= at))
    leads["conv"] = np.where(leads["converted_at"].notna(), conv_by_date, conv_by_deal)
    leads["cust"] = leads["conv"] & deal_won.fillna(False).astype(bool)
    leads["src"] = _blank(leads["source"]).fillna("Unknown")
    reps = frames["reps"].drop_duplicates("owner_id").set_index("owner_id")
    if by == "rep":
        leads["g"] = _blank(leads["owner_id"]).fillna("Unassigned")
    elif by in ("team", "region"):
        leads["g"] = _blank(leads["owner_id"].map(reps[by])).fillna("Unassigned")
    return leads


def _block(ctx: _Context, sub: pd.DataFrame, g: str | None) -> dict[str, Any]:
    """The figures of one set of deals: the whole company (``g`` None) or one group."""
    overall = g is None
    w = sub[sub["st"] == "won"]
    lost = int((sub["st"] == "lost").sum())
    scores = _scores(ctx, g)
    rows, revs = _period_rows(ctx, sub, scores, overall)
    done = [i for i, c in enumerate(ctx.complete) if c]
    last = rows[done[-1]] if done else None
    recent = [r for r in (revs[i] for i in done[-4:]) if r is not None]
    revenue = float(w["amount"].sum())
    cac, by_channel = _cac(ctx, sub) if overall else (None, None)
    op = sub[sub["st"] == "open"]
    price = op["product"].map(ctx.prices).astype("float64")
    value = op["amount"].fillna(price)
    estimated = price[op["amount"].isna()]
    return {
        "revenue": round(revenue, 2),
        "revenue_growth": None if last is None else last["revenue_growth"],
        "revenue_growth_yoy": None if last is None else last["revenue_growth_yoy"],
        "deals_won": len(w),
        "deals_lost": lost,
        "win_rate": _r(_div(len(w), len(w) + lost), 4),
        "average_order_value": _r(_div(revenue, int(w["amount"].count())), 2),
        "median_cycle_days": _r(float(w["cycle"].median()) if len(w) else None, 2),
        "p75_cycle_days": _r(float(w["cycle"].quantile(0.75)) if len(w) else None, 2),
        "cac": cac,
        "cac_by_channel": by_channel,
        "nps": _nps(scores["score"]),
        "nps_responses": len(scores),
        "open_pipeline": round(float(value.sum()), 2),
        "open_pipeline_deals": len(op),
        "open_pipeline_estimated": round(float(estimated.sum()), 2),
        "pipeline_coverage": _r(
            _div(float(value.sum()), sum(recent) / len(recent)) if recent else None, 4
        ),
        "lead_conversion": _lead_rows(ctx, g),
        "web_traffic": _web_rows(ctx, sub) if overall else None,
        "funnel": _funnel_rows(ctx, g),
        "periods": rows,
    }


def _scores(ctx: _Context, g: str | None) -> pd.DataFrame:
    """The NPS responses of the company (``g`` None) or of one group."""
    if g is None:
        return ctx.nps
    if ctx.by == "segment":
        return ctx.nps[ctx.nps_segment == g]
    return ctx.nps_by_group[ctx.nps_by_group["g"] == g]


def _period_rows(
    ctx: _Context, sub: pd.DataFrame, scores: pd.DataFrame, overall: bool
) -> tuple[list[dict[str, Any]], list[float | None]]:
    """One row of figures per grid period, and the revenue of each (None: unknown)."""
    w = sub[sub["st"] == "won"]
    wp = w.groupby("p")
    rev_p = wp["amount"].sum().to_dict()
    won_p = wp.size().to_dict()
    amt_p = wp["amount"].count().to_dict()
    med_p = wp["cycle"].median().to_dict()
    lost_p = sub[sub["st"] == "lost"].groupby("p").size().to_dict()
    new_p = sub[sub["new_customer"]].groupby("p").size().to_dict()
    spend_p = ctx.spend.groupby("p")["amount"].sum().to_dict()
    nps_p = {p: _nps(part["score"]) for p, part in scores.groupby(
        _pidx(scores["responded_at"], ctx.period))}  # fmt: skip
    lag = LAG[ctx.period]
    rows: list[dict[str, Any]] = []
    revs: list[float | None] = []
    for i, p in enumerate(ctx.grid):
        # before any deal closed anywhere: closed figures unknown (null), not 0
        known = ctx.closes_from is not None and p >= ctx.closes_from
        rev = float(rev_p.get(p, 0.0)) if known else None
        revs.append(rev)
        nw, nl = int(won_p.get(p, 0)), int(lost_p.get(p, 0))
        prev = revs[i - 1] if i >= 1 else None
        yoy = revs[i - lag] if i >= lag else None
        sp = None
        if overall and len(ctx.spend) > 0:
            # Inside the span the spend rows cover: a period without a row spent nothing;
            # outside it, spend was not recorded (unknown).
            inside = bool(spend_p) and min(spend_p) <= p <= max(spend_p)
            sp = float(spend_p.get(p, 0.0)) if inside else None
        nc = int(new_p.get(p, 0)) if known else None
        rows.append(
            {
                "period_start": _pdate(p).isoformat(),
                "complete": ctx.complete[i],
                "closes_recorded": known,
                "revenue": None if rev is None else round(rev, 2),
                "revenue_growth": _r(
                    _div(rev - prev, prev) if rev is not None and prev else None, 4
                ),
                "revenue_growth_yoy": _r(
                    _div(rev - yoy, yoy) if rev is not None and yoy else None, 4
                ),
                "deals_won": nw if known else None,
                "deals_lost": nl if known else None,
                "win_rate": _r(_div(nw, nw + nl), 4),
                "average_order_value": _r(_div(rev, int(amt_p.get(p, 0))), 2),
                "median_cycle_days": _r(med_p.get(p), 2),
                "new_customers": nc,
                "marketing_spend": _r(sp, 2),
                "cac": _r(_div(sp, nc), 2),
                "nps": nps_p.get(p),
            }
        )
    return rows, revs


def _cac(ctx: _Context, sub: pd.DataFrame) -> tuple[float | None, dict[str, float | None]]:
    """The company's CAC, and per channel (empty without marketing spend)."""
    by_channel: dict[str, float | None] = {}
    if len(ctx.spend) == 0:
        return None, by_channel
    new = sub[sub["new_customer"] & (sub["st"] == "won")]
    cac = _r(_div(float(ctx.spend["amount"].sum()), len(new)), 2)
    per_ch = new.groupby("lead_source").size()
    for ch, amount in sorted(ctx.spend.groupby("channel")["amount"].sum().items()):
        by_channel[str(ch)] = _r(_div(float(amount), int(per_ch.get(ch, 0))), 2)
    return cac, by_channel


def _web_rows(ctx: _Context, sub: pd.DataFrame) -> list[dict[str, Any]] | None:
    """Sessions, key events, new customers (by lead source = channel), spend and CAC per web
    channel; customers unknown when no new customer's source names a web channel."""
    if len(ctx.web) == 0:
        return None
    new = sub[sub["new_customer"] & (sub["st"] == "won")]
    per_ch = new.groupby("lead_source").size()
    matched = any(ch in per_ch.index for ch in ctx.web["channel"].unique())
    spend = ctx.spend.groupby("channel")["amount"].sum()
    rows = []
    for ch, part in sorted(ctx.web.groupby("channel"), key=lambda kv: str(kv[0])):
        sessions = int(part["sessions"].sum())
        filled = part["key_events"].dropna()
        # fractional key events (GA4) summed exactly, in decimal: whole totals stay whole
        total = sum((Decimal(repr(float(v))) for v in filled), Decimal(0))
        key_events = (int(total) if total == int(total) else float(total)) if len(filled) else None
        n = int(per_ch.get(ch, 0)) if matched else None
        amount = float(spend[ch]) if ch in spend.index else None
        rows.append(
            {
                "channel": str(ch),
                "sessions": sessions,
                "key_events": key_events,
                "key_event_rate": _r(_div(key_events, sessions), 4),
                "new_customers": n,
                "session_to_customer_rate": _r(_div(n, sessions), 4),
                "marketing_spend": _r(amount, 2),
                "cac": _r(_div(amount, n), 2),
            }
        )
    return rows


def _lead_rows(ctx: _Context, g: str | None) -> list[dict[str, Any]] | None:
    """Lead conversion per source (company-wide, or for a group of reps)."""
    if g is not None and ctx.by not in ("rep", "team", "region"):
        return None
    ls = ctx.leads if g is None else ctx.leads[ctx.leads["g"] == g]
    lead_rows = []
    for src, part in sorted(ls.groupby("src"), key=lambda kv: str(kv[0])):
        n, cv, cu = len(part), int(part["conv"].sum()), int(part["cust"].sum())
        lead_rows.append(
            {
                "source": str(src),
                "leads": n,
                "converted": cv,
                "customers": cu,
                "lead_to_customer_rate": _r(_div(cu, n), 4),
            }
        )
    return lead_rows


def _funnel_rows(ctx: _Context, g: str | None) -> list[dict[str, Any]]:
    """Stage-to-next-stage conversion along the funnel's order."""
    funnel = []
    part_adv = ctx.advanced if g is None else ctx.advanced[ctx.advanced["g"] == g]
    for a, b in itertools.pairwise(ctx.stages):
        rows_a = part_adv[part_adv["stage"] == a]
        entered, adv = len(rows_a), int(rows_a["advanced"].sum())
        funnel.append(
            {
                "from_stage": a,
                "to_stage": b,
                "entered": entered,
                "advanced": adv,
                "conversion_rate": _r(_div(adv, entered), 4),
            }
        )
    return funnel


def _funnel(history: pd.DataFrame, d: pd.DataFrame, at: pd.Timestamp) -> tuple[list[str], Any]:
    """Stage order, and per (deal, stage entered) whether it advanced to the next stage."""
    empty = pd.DataFrame({"g": [], "stage": [], "advanced": []})
    h = history.copy()
    h["changed_at"] = pd.to_datetime(h["changed_at"])
    h = h[h["changed_at"] <= at].merge(d[["deal_id", "g", "st"]], on="deal_id")
    names = pd.Series(h["stage"].unique())
    kept = names[[not TERMINAL.match(str(s).strip()) for s in names]]
    h = h[h["stage"].isin(kept)]
    if h.empty:
        return [], empty
    # Integer codes for speed; stage codes follow name order (the tie-break of the ranking).
    h["deal"] = pd.factorize(h["deal_id"])[0]
    names_sorted = sorted(str(x) for x in kept)
    h["sc"] = pd.Categorical(h["stage"], categories=names_sorted).codes
    info = h.drop_duplicates("deal")[["deal", "g", "st"]]
    fe = h.groupby(["deal", "sc"], as_index=False).agg({"changed_at": "min"})
    fe = fe.sort_values(["deal", "changed_at", "sc"])
    fe["rn"] = fe.groupby("deal").cumcount() + 1
    stats = fe.groupby("sc")["rn"].agg(["median", "mean"]).reset_index()
    ranked = sorted(
        zip(stats["median"], stats["mean"], [names_sorted[c] for c in stats["sc"]], strict=True)
    )
    order = [str(s) for _, _, s in ranked]
    if len(order) < 2:
        return order, empty
    pos = np.empty(len(names_sorted), dtype=np.int64)
    for i, name in enumerate(order):
        pos[names_sorted.index(name)] = i
    fe["pos"] = pos[fe["sc"].to_numpy()]
    # reach = furthest stage entered at or after this entry (peers at the same time included).
    peak = fe.groupby(["deal", "changed_at"], as_index=False).agg({"pos": "max"})
    peak = peak.sort_values(["deal", "changed_at"], ascending=[True, False])
    peak["reach"] = peak.groupby("deal")["pos"].cummax()
    fe = fe.merge(peak[["deal", "changed_at", "reach"]], on=["deal", "changed_at"])
    fe = fe.merge(info, on="deal")
    fe["advanced"] = (fe["reach"] > fe["pos"]) | (fe["st"] == "won")
    fe = fe[fe["pos"] < len(order) - 1]
    fe["stage"] = np.array(order, dtype=object)[fe["pos"].to_numpy()]
    return order, fe[["g", "stage", "advanced"]]
