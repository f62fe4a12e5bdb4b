"""Sales KPIs from the warehouse: revenue, growth, win rate, cycle, CAC, NPS, pipeline, funnel.

``compute_kpis`` aggregates inside DuckDB and returns a JSON-serialisable dict whose shape and
definitions are documented in ``docs/kpis.md`` (integrations depend on the names). Time is an
argument: every figure is computed as of ``as_of``, which defaults to the latest event in the
data, so an old export reads as it did on its last day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any, get_args

import duckdb

from salesml.errors import ConfigError, WarehouseError
from salesml.kpis import _funnel, _marketing
from salesml.kpis import _queries as q
from salesml.kpis._assemble import Facts, block, first_close_period, period_grid
from salesml.kpis._queries import GroupBy, PeriodUnit
from salesml.warehouse import data_span

__all__ = ["DEFAULT_CURRENCY", "GROUP_BYS", "PERIODS", "NoDealsError", "compute_kpis"]

GROUP_BYS: tuple[str, ...] = get_args(GroupBy)
PERIODS: tuple[str, ...] = get_args(PeriodUnit)
DEFAULT_CURRENCY = "USD"


class NoDealsError(WarehouseError):
    """There are no deals to compute KPIs from (empty warehouse, or as_of before them all)."""


def _naive_utc(moment: datetime | date) -> datetime:
    """as_of as the warehouse stores time: naive UTC (a bare date means its midnight)."""
    if not isinstance(moment, datetime):
        return datetime.combine(moment, time())
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def compute_kpis(
    con: duckdb.DuckDBPyConnection,
    by: GroupBy | None = None,
    period: PeriodUnit = "quarter",
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """Compute the sales KPI table of the warehouse behind ``con``.

    Args:
        con: an open warehouse connection (``salesml.warehouse.connect``); read-only is fine.
            Work happens on a private cursor whose temporary tables vanish on return.
        by: also break every figure down by ``rep``, ``team``, ``region``, ``product`` or
            ``segment``; ``None`` gives the overall block only.
        period: granularity of the ``periods`` rows and of the growth figures.
        as_of: the moment the KPIs are computed at (naive = UTC; a bare ``date`` means its
            midnight). Deals created after it are ignored and deals closed after it count as
            open. Default: the data's as-of, the latest event in any table
            (``salesml.warehouse.data_span``).

    Returns:
        ``{"as_of", "period", "by", "currency", "warnings", "overall", "groups"}``; see
        docs/kpis.md for every field and definition.

    Raises:
        NoDealsError: the warehouse has no deals, or none created on or before ``as_of``.
        ConfigError: ``by`` or ``period`` is not one of the accepted values.
    """
    if by is not None and by not in GROUP_BYS:
        raise ConfigError(f"cannot group KPIs by {by!r}; use one of {', '.join(GROUP_BYS)}")
    if period not in PERIODS:
        raise ConfigError(f"unknown KPI period {period!r}; use one of {', '.join(PERIODS)}")
    cur = con.cursor()
    try:
        return _compute(cur, by, period, as_of)
    finally:
        cur.close()


def _compute(
    cur: duckdb.DuckDBPyConnection,
    by: GroupBy | None,
    unit: PeriodUnit,
    as_of: datetime | None,
) -> dict[str, Any]:
    tables = q.present_tables(cur)
    n_all, latest = q.deal_bounds(cur, tables)
    if n_all == 0 or latest is None:
        raise NoDealsError(
            "no deals in the warehouse; import an export first: salesml import PATH --format ..."
        )
    moment = (data_span(cur).end or latest) if as_of is None else _naive_utc(as_of)
    n_deals, n_undated, first = q.load_deals(cur, tables, by, unit, moment)
    if (n_deals == 0 or first is None) and n_undated:
        raise NoDealsError(
            f"all {n_undated} deals created on or before as_of {moment.isoformat()} are "
            "won/lost without closed_at; fill closed_at in the export and re-import"
        )
    if n_deals == 0 or first is None:
        raise NoDealsError(
            f"no deals created on or before as_of {moment.isoformat()} (the warehouse has "
            f"{n_all} deals, the latest event at {latest.isoformat()}); pick a later as_of"
        )
    warnings: list[str] = []
    if n_undated:
        warnings.append(
            f"{n_undated} won/lost deals have no closed_at and are left out of every figure; "
            "fill closed_at in the export and re-import"
        )
    found = q.currencies(cur)
    currency = found[0][0] if found else DEFAULT_CURRENCY
    if len(found) > 1:
        codes = ", ".join(c for c, _ in found)
        warnings.append(
            f"deals are in {len(found)} currencies ({codes}); amounts are summed without "
            f"conversion and reported as {currency}: convert them to one currency on import"
        )

    other_start = _marketing.first_activity_period(cur, tables, unit, moment)
    start = first if other_start is None else min(first, other_start)
    new, new_by_channel = q.new_customers(cur, by, unit)
    facts = Facts(
        unit=unit,
        grid=period_grid(start, moment, unit),
        closed=q.closed_figures(cur, by, unit),
        new_customers=new,
        new_customers_by_channel=new_by_channel,
        spend=_marketing.marketing_spend(cur, tables, unit, moment),
        nps=_marketing.nps(cur, tables, by, unit, moment),
        pipeline=q.open_pipeline(cur, tables, by),
        leads=_marketing.lead_conversion(cur, tables, by, moment),
        leads_by_group=by in ("rep", "team", "region"),
        funnel=_funnel.funnel(cur, tables, by, moment),
        web=_marketing.web_traffic(cur, tables, moment),
    )
    closes_from = first_close_period(facts)
    unrecorded = [s for s, _ in facts.grid if closes_from is None or s < closes_from]
    if unrecorded:
        since = (
            "the export holds no closed deal"
            if closes_from is None
            else (f"the first deal closes in the {unit} of {closes_from.isoformat()}")
        )
        warnings.append(
            f"{since} though the data starts {facts.grid[0][0].isoformat()}: closed-deal "
            f"figures of the {len(unrecorded)} {unit}(s) without any close are unknown (null), "
            "not 0; if the CRM recorded closes then, include them in the export"
        )
    if facts.web is not None and not set(facts.web) & set(new_by_channel):
        warnings.append(
            "no new customer's lead_source names a web-analytics channel "
            f"({', '.join(list(facts.web)[:3])}…): customers and CAC per web channel are "
            "unknown; record the GA4 source / medium as the deals' lead source"
        )
    result_groups: list[dict[str, Any]] = []
    if by is not None:
        for g, label in q.groups(cur, tables, by):
            head: dict[str, Any] = {"group": g}
            if by == "rep":
                head["label"] = label
            result_groups.append(head | block(facts, g))
    return {
        "as_of": moment.isoformat(),
        "period": unit,
        "by": by,
        "currency": currency,
        "warnings": warnings,
        "overall": block(facts, None),
        "groups": result_groups,
    }
