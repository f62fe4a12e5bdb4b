"""Brute-force reference: every feature from its definition, one (deal, as_of) at a time.

Slow on purpose. The tables become plain lists of rows; for each as_of and each deal open then,
every feature is computed the obvious way from the rows stamped at or before as_of.
``build_snapshots`` must agree on every cell.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.history import History
from features.spec import Feature

Row = dict[str, Any]
DAY = pd.Timedelta(days=1)
WINDOW = pd.Timedelta(days=365)
K = 10.0
BANDS = [(50, "1-49"), (250, "50-249"), (1000, "250-999"), (5000, "1000-4999")]
NAN = float("nan")


def missing(value: Any) -> bool:
    return value is None or bool(pd.isna(value))


def days(later: Any, earlier: Any) -> float:
    return NAN if missing(later) or missing(earlier) else float((later - earlier) / DAY)


def text(value: Any) -> str:
    return "missing" if missing(value) else str(value)


def median(values: list[float]) -> float:
    return float(np.median(values)) if values else NAN


def records(frame: pd.DataFrame) -> list[Row]:
    return [
        {k: (None if missing(v) else v) for k, v in r.items()} for r in frame.to_dict("records")
    ]


def is_open(deal: Row, as_of: pd.Timestamp) -> bool:
    closed = deal["closed_at"]
    return bool(deal["created_at"] <= as_of and (closed is None or closed > as_of))


class Reference:
    """The history as rows, with one method per feature group."""

    def __init__(self, h: History) -> None:
        self.h = h
        self.deals = sorted(records(h.deals), key=lambda d: d["deal_id"])
        known = {d["deal_id"] for d in self.deals}
        self.stages = [r for r in records(h.stage_history) if r["deal_id"] in known]
        self.acts = records(h.activities)
        self.reps = records(h.reps)
        self.accounts = records(h.accounts)
        self.products = records(h.products)

    def stage_rows(self, deal_id: str, as_of: pd.Timestamp) -> list[Row]:
        rows = [r for r in self.stages if r["deal_id"] == deal_id and r["changed_at"] <= as_of]
        return sorted(rows, key=lambda r: (r["changed_at"], r["stage"]))

    def stage_order(self, as_of: pd.Timestamp) -> dict[str, tuple[float, float, str]]:
        """Sort key of each stage seen by as_of: median and mean rank of first entries, name."""
        ranks: dict[str, list[int]] = {}
        for deal in self.deals:
            entered: list[str] = []
            for row in self.stage_rows(deal["deal_id"], as_of):
                if row["stage"] not in entered:
                    ranks.setdefault(row["stage"], []).append(len(entered))
                    entered.append(row["stage"])
        return {s: (float(np.median(r)), float(np.mean(r)), s) for s, r in ranks.items()}

    def stage_part(self, deal_id: str, as_of: pd.Timestamp, order: dict[str, Any]) -> Row:
        rows = self.stage_rows(deal_id, as_of)
        if not rows:
            keys = ["days_in_stage", "stage_regressions", "close_date_pushes", "push_days_total"]
            keys += ["amount", "amount_changes", "days_to_expected_close"]
            return {"current_stage": "missing", "stage": None} | dict.fromkeys(keys, NAN)
        last = rows[-1]
        start = len(rows) - 1
        while start > 0 and rows[start - 1]["stage"] == last["stage"]:
            start -= 1
        regressions = pushes = amount_changes = 0
        push_days = 0.0
        for before, now in itertools.pairwise(rows):
            if now["stage"] != before["stage"] and order[now["stage"]] < order[before["stage"]]:
                regressions += 1
            old, new = before["expected_close_date"], now["expected_close_date"]
            if old is not None and new is not None and new > old:
                pushes += 1
                push_days += days(new, old)
            if before["amount"] != now["amount"]:  # None == None: unchanged
                amount_changes += 1
        return {
            "current_stage": last["stage"],
            "stage": last["stage"],
            "days_in_stage": days(as_of, rows[start]["changed_at"]),
            "stage_regressions": float(regressions),
            "close_date_pushes": float(pushes),
            "push_days_total": push_days,
            "amount": NAN if last["amount"] is None else float(last["amount"]),
            "amount_changes": float(amount_changes),
            "days_to_expected_close": days(last["expected_close_date"], as_of),
        }

    def activity_part(self, deal_id: str, as_of: pd.Timestamp) -> Row:
        mine = [a for a in self.acts if a["deal_id"] == deal_id and a["occurred_at"] <= as_of]
        times = [a["occurred_at"] for a in mine]
        meetings = [a for a in mine if str(a.get("type")).lower() in ("meeting", "demo")]

        def within(n_days: int) -> float:
            return float(sum(t > as_of - n_days * DAY for t in times))

        return {
            "activities_7d": within(7),
            "activities_30d": within(30),
            "activities_90d": within(90),
            "activities_total": float(len(times)),
            "days_since_last_activity": days(as_of, max(times)) if times else NAN,
            "engagement_trend": within(30) - (within(60) - within(30)),
            "meetings_total": float(len(meetings)),
        }

    def closed(self, as_of: pd.Timestamp, since: pd.Timestamp | None = None) -> list[Row]:
        return [
            d
            for d in self.deals
            if d["status"] in ("won", "lost")
            and d["closed_at"] is not None
            and d["closed_at"] <= as_of
            and (since is None or d["closed_at"] > since)
        ]

    def rep_part(self, deal: Row, as_of: pd.Timestamp, amounts: dict[str, float]) -> Row:
        owner = deal["owner_id"]
        if owner is None:
            keys = ["rep_win_rate_365d", "rep_closed_deals_365d", "rep_cycle_days_365d"]
            keys += ["rep_open_deals", "rep_open_amount", "rep_tenure_days"]
            return dict.fromkeys(keys, NAN)
        window = self.closed(as_of, as_of - WINDOW)
        team = [d for d in window if deal["team"] is not None and d["team"] == deal["team"]]
        pool = team or window
        prior = sum(d["status"] == "won" for d in pool) / len(pool) if pool else NAN
        mine = [d for d in window if d["owner_id"] == owner]
        wins = sum(d["status"] == "won" for d in mine)
        rate = (wins + K * prior) / (len(mine) + K)

        def cycles(deals: list[Row]) -> list[float]:
            return [days(d["closed_at"], d["created_at"]) for d in deals if d["status"] == "won"]

        prior_cycle = median(cycles(team)) if cycles(team) else median(cycles(window))
        n = len(cycles(mine))
        cycle = (n * median(cycles(mine)) + K * prior_cycle) / (n + K) if n else prior_cycle
        peers = [d for d in self.deals if d["owner_id"] == owner and is_open(d, as_of)]
        load = [amounts[d["deal_id"]] for d in peers]
        hired = next((r["hired_at"] for r in self.reps if r["owner_id"] == owner), None)
        return {
            "rep_win_rate_365d": rate,
            "rep_closed_deals_365d": float(len(mine)),
            "rep_cycle_days_365d": cycle,
            "rep_open_deals": float(len(peers)),
            "rep_open_amount": sum(0.0 if np.isnan(a) else a for a in load),
            "rep_tenure_days": days(as_of, hired),
        }

    def account_part(self, deal: Row, as_of: pd.Timestamp) -> Row:
        account = deal["account_id"]
        out: Row = {"account_won_deals": NAN, "account_won_revenue": NAN}
        if account is not None:
            won = [
                d for d in self.closed(as_of) if d["status"] == "won" and d["account_id"] == account
            ]
            out["account_won_deals"] = float(len(won))
            out["account_won_revenue"] = float(sum(d["amount"] or 0.0 for d in won))
        row = next((a for a in self.accounts if a["account_id"] == account), None)
        employees = NAN if row is None or row["employees"] is None else float(row["employees"])
        out["account_employees"] = employees
        out["account_industry"] = text(row["industry"] if row else None)
        band = "missing" if np.isnan(employees) else "5000+"
        for edge, name in reversed(BANDS):
            if employees < edge:
                band = name
        out["account_size_band"] = band
        return out

    def product_part(self, deal: Row, as_of: pd.Timestamp, amount: float) -> Row:
        product = deal["product"]
        won = [
            d["amount"]
            for d in self.closed(as_of)
            if d["status"] == "won" and d["product"] == product and d["amount"] is not None
        ]
        typical = median(won) if product is not None else NAN
        row = next((p for p in self.products if p["product"] == product), None)
        price = NAN if row is None or row["list_price"] is None else float(row["list_price"])
        return {
            "amount_vs_product_typical": amount / typical if typical > 0 else NAN,
            "amount_vs_list_price": amount / price if price > 0 else NAN,
        }

    def snapshots(self, dates: Sequence[pd.Timestamp], spec: Sequence[Feature]) -> pd.DataFrame:
        rows = []
        for as_of in sorted(set(dates)):
            open_deals = [d for d in self.deals if is_open(d, as_of)]
            order = self.stage_order(as_of)
            stage = {d["deal_id"]: self.stage_part(d["deal_id"], as_of, order) for d in open_deals}
            amounts = {k: v["amount"] for k, v in stage.items()}
            for deal in open_deals:
                row: Row = {"deal_id": deal["deal_id"], "as_of": as_of}
                row |= {c: deal[c] for c in ("owner_id", "account_id", "team")}
                row |= stage[deal["deal_id"]]
                row["age_days"] = days(as_of, deal["created_at"])
                row |= self.activity_part(deal["deal_id"], as_of)
                row |= self.rep_part(deal, as_of, amounts)
                row |= self.account_part(deal, as_of)
                row |= self.product_part(deal, as_of, row["amount"])
                for name in ("product", "lead_source", "deal_type", "region"):
                    row[name] = text(deal[name])
                row["sales_team"] = text(deal["team"])
                for f in spec:
                    if f.name.startswith("attr_"):
                        value = deal.get(f.name)
                        row[f.name] = (
                            (NAN if value is None else float(value))
                            if (f.kind == "numeric")
                            else text(value)
                        )
                row |= self.labels(deal, as_of)
                rows.append(row)
        return pd.DataFrame(rows)

    def labels(self, deal: Row, as_of: pd.Timestamp) -> Row:
        status, closed = deal["status"], deal["closed_at"]
        outcome = status if status in ("won", "lost") and closed is not None else "open"
        return {
            "outcome": outcome,
            "label_won": {"won": 1.0, "lost": 0.0}.get(outcome, NAN),
            "closed_at": closed if outcome != "open" else pd.NaT,
            "days_to_close": days(closed, as_of) if outcome != "open" else NAN,
            "days_observed": days(self.h.exported_at, as_of),
        }


def reference_snapshots(
    h: History, dates: Sequence[pd.Timestamp], spec: Sequence[Feature]
) -> pd.DataFrame:
    """Every (deal open at as_of, as_of), columns as ``build_snapshots`` (categoricals as str)."""
    return Reference(h).snapshots(dates, spec)
