"""The answers of the two hot routes, shared by the FastAPI routes and the hot path
(``serving.api.hot``): a deal's GET document and a score request's response body, both as
encoded JSON."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from salesml.explain import score_change as attribute_change
from serving.api.encoding import encode_row
from serving.api.problems import ProblemError, Problems
from serving.api.schemas import (
    DealResponse,
    KnownDeal,
    NewDealItem,
    RunPoint,
    ScoreChange,
    ScoreRequest,
    ScoreRow,
)
from serving.api.security import Principal
from serving.api.state import (
    EXPLAIN_COLUMNS,
    MEMO_MAX_ROWS,
    RunView,
    ServingState,
    Snapshot,
    dumps,
    jsonable,
)
from serving.api.whatif import (
    NEW_PREFIX,
    Change,
    DataIndex,
    change_problems,
    effective_team,
    live_rows,
    plain_rows,
)

log = logging.getLogger("salesml.api")


def not_found(what: str, value: str, where: str) -> ProblemError:
    return ProblemError(404, f"no {what} {value!r}", field=where)


def probability_move(p0: Any, p1: Any, dp: float | None) -> str:
    """How the win probability moved from ``p0`` to ``p1`` (``dp``: their difference), in
    words: the opening of every score-change summary (between runs, or after an event)."""
    if dp is None:
        return "no comparable win probability"
    if abs(dp) < 5e-4:
        return f"win probability unchanged ({100 * float(p1):.0f}%)"
    direction = "up" if dp > 0 else "down"
    return (
        f"win probability {direction} {100 * abs(dp):.1f} points "
        f"({100 * float(p0):.0f}% to {100 * float(p1):.0f}%)"
    )


def score_change(points: list[dict[str, Any]], deal_id: str) -> ScoreChange | None:
    """What changed between the last two runs that scored the deal."""
    if len(points) < 2:
        return None
    prev, cur = points[-2], points[-1]
    p0, p1 = prev.get("win_probability"), cur.get("win_probability")
    s0, s1 = prev.get("score"), cur.get("score")
    dp = None if p0 is None or p1 is None else float(p1) - float(p0)
    ds = None if s0 is None or s1 is None else int(s1) - int(s0)
    model_changed = prev.get("model_version") != cur.get("model_version")
    as_of_changed = prev.get("as_of") != cur.get("as_of")
    summary = probability_move(p0, p1, dp)
    if model_changed:
        summary += f"; model version {prev.get('model_version')} to {cur.get('model_version')}"
    if as_of_changed:
        summary += "; new data since the previous run"
    try:
        drivers: list[dict[str, Any]] | None = attribute_change(prev, cur)
    except Exception:  # an attribution failure must not fail the read
        log.warning("driver attribution failed for a deal")
        drivers = None
    return ScoreChange(
        previous_run_id=str(prev["run_id"]),
        current_run_id=str(cur["run_id"]),
        win_probability_change=dp,
        score_change=ds,
        model_changed=bool(model_changed),
        as_of_changed=bool(as_of_changed),
        summary=summary,
        drivers=drivers,
    )


# -- GET /v1/deals/{deal_id} -------------------------------------------------------------------
def deal_answer(run: RunView, deal_id: str) -> tuple[str | None, bytes] | None:
    """``(team, encoded DealResponse)`` of a deal in ``run``, or ``None``.

    Computed once per run and kept (the run is immutable; a new run is a new view and starts
    empty): the row, its history across runs and what changed, validated by ``DealResponse``.
    """
    hit = run.answers.get(deal_id)
    if hit is not None:
        return hit
    row = run.row(deal_id)
    if row is None:
        return None
    points = run.history(deal_id, explained=True)
    shown = [{k: v for k, v in p.items() if k not in EXPLAIN_COLUMNS} for p in points]
    answer = DealResponse(
        run_id=run.info.run_id,
        score=ScoreRow(**row),
        history=[RunPoint(**p) for p in shown],
        change=score_change(points, deal_id),
    )
    hit = (row.get("team"), dumps(answer.model_dump(mode="json")).encode())
    if len(run.answers) < MEMO_MAX_ROWS:
        run.answers[deal_id] = hit
    return hit


# -- closed deals ----------------------------------------------------------------------------
CLOSED_NOTE = "closed deals are not scored"
CLOSED = ("won", "lost")
PendingRow = Callable[[str], dict[str, Any] | None]
"""A deal's newest row from events not yet in the served data (``LiveEvents.pending_row``)."""
_CLOSED_LOCK = threading.Lock()


@dataclass
class _ClosedCache:
    """The closed deals of the served data (one data at a time; a new data builds anew)."""

    data: weakref.ref[DataIndex] | None = None
    deals: dict[str, dict[str, Any]] = field(default_factory=dict)


_CLOSED = _ClosedCache()


def _closed_in(data: DataIndex) -> dict[str, dict[str, Any]]:
    """The closed deals of ``data``: deal_id → status, closed_at, owner_id, team (built once
    per data, only of the closed deals)."""
    cache = _CLOSED
    if cache.data is not None and cache.data() is data:
        return cache.deals
    with _CLOSED_LOCK:
        if cache.data is not None and cache.data() is data:
            return cache.deals
        deals = data.history.deals
        closed = deals[deals["status"].isin(CLOSED)]
        cols = [c for c in ("status", "closed_at", "owner_id", "team") if c in closed]
        found = {
            str(deal): jsonable(dict(zip(cols, values, strict=True)))
            for deal, values in zip(
                closed["deal_id"], closed[cols].itertuples(index=False), strict=True
            )
        }
        cache.deals, cache.data = found, weakref.ref(data)
    return found


def closed_deal(
    data: DataIndex | None, pending: PendingRow | None, deal_id: str
) -> dict[str, Any] | None:
    """The deal's row when it is closed as it stands — by an event not yet in the served data
    (``pending``), else in the data — else ``None`` (open, or unknown)."""
    row = pending(deal_id) if pending is not None else None
    if row is not None:
        return row if row.get("status") in CLOSED else None
    if data is None:
        return None
    return _closed_in(data).get(deal_id)


def closed_answer(run: RunView, deal_id: str, row: dict[str, Any]) -> tuple[str | None, bytes]:
    """``(team, encoded DealResponse)`` of a closed deal: its status and closed_at, no score
    (win_probability null, with the note why) and its points in the runs that scored it."""
    points = run.history(deal_id)
    closed_at = jsonable(row.get("closed_at"))
    answer = DealResponse(
        run_id=run.info.run_id,
        status=row["status"],
        closed_at=None if closed_at is None else str(closed_at),
        note=CLOSED_NOTE,
        score=ScoreRow(
            deal_id=deal_id,
            owner_id=row.get("owner_id"),
            team=row.get("team"),
            win_probability=None,
            score=None,
            model_version=str(run.info.model_version),
        ),
        history=[RunPoint(**p) for p in points],
        change=None,
    )
    return row.get("team"), dumps(answer.model_dump(mode="json")).encode()


def deal_document(
    run: RunView, deal_id: str, data: DataIndex | None, pending: PendingRow | None
) -> tuple[str | None, bytes] | None:
    """The GET /v1/deals/{id} answer: a closed deal's status (won / lost, with closed_at and
    no score — an event or the data closed it, whatever the last run scored), else the deal's
    score (``deal_answer``), else ``None`` (404)."""
    row = closed_deal(data, pending, deal_id)
    if row is not None:
        return closed_answer(run, deal_id, row)
    return deal_answer(run, deal_id)


def warm(state: ServingState, snap: Snapshot, chunk: int = 64) -> int:
    """Compute the snapshot's GET answers and its memoised score rows from the run ahead of
    the first requests (called on a background thread after a swap). Stops early when the
    snapshot is replaced. Returns the deals warmed."""
    run, memo = snap.run, snap.memo
    if snap.data is not None:
        snap.data.team_of("")  # builds the team lookup
    if run is None:
        return 0
    done = 0
    for deal_id in run.positions[:MEMO_MAX_ROWS]:
        deal_answer(run, deal_id)
        if memo is not None and memo.run is run and deal_id in memo.from_run:
            memo.get(deal_id)
        done += 1
        if done % chunk == 0:
            if state.snapshot() is not snap or state.stopping:
                break
            time.sleep(0)  # let the event loop thread in
    return done


# -- POST /v1/deals/score ------------------------------------------------------------------------
FOREIGN_OWNER = "this key scores deals of its own team's reps only"
"""The one answer (403) to an owner outside a team-bound key's team, existing or not: the same
status and text for both, so a key cannot learn another team's rep ids or statistics."""


_NEW_KEYS = itertools.count()  # the internal ids of new deals, unique in the process


@dataclass
class _Plan:
    """A score request's deals, checked: known deals scored as they are, what-ifs and new deals,
    and where each goes in the answer."""

    plain: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    order: list[tuple[str, int]] = field(default_factory=list)


def _check_owner(data: DataIndex, principal: Principal, owner_id: str | None, where: str) -> None:
    """A team-bound key names reps of its own team only (403, the same for unknown reps);
    another key gets 422 for a rep the data does not know."""
    if owner_id is None:
        return
    if principal.team is not None:
        if data.owner_team.get(owner_id) != principal.team:
            raise ProblemError(403, FOREIGN_OWNER, field=f"{where}.owner_id")
    elif not data.knows_owner(owner_id):
        raise ProblemError(422, f"unknown owner_id {owner_id!r}", field=f"{where}.owner_id")


def _check_stage(data: DataIndex, stage: str | None, where: str) -> None:
    if stage is not None and stage not in data.stages:
        known = ", ".join(data.stages) or "none"
        raise ProblemError(422, f"unknown stage {stage!r} (known: {known})", field=f"{where}.stage")


def _check_known(data: DataIndex, principal: Principal, deal_id: str, where: str) -> None:
    if not data.knows(deal_id) or not principal.sees_team(data.team_of(deal_id)):
        raise not_found("deal", deal_id, f"{where}.deal_id")
    if deal_id not in data.features.index:
        raise ProblemError(
            422,
            f"deal {deal_id!r} is {data.status_of(deal_id)}; only open deals are scored",
            field=f"{where}.deal_id",
        )


def _known_item(
    plan: _Plan, data: DataIndex, principal: Principal, item: KnownDeal, i: int, bad: Problems
) -> None:
    where = f"body.deals[{i}]"
    deal_id = item.deal_id
    if not bad.check(_check_known, data, principal, deal_id, where):
        return
    overrides = item.overrides
    if overrides is None or all(v in (None, {}) for v in overrides.model_dump().values()):
        plan.order.append(("plain", len(plan.plain)))
        plan.plain.append(deal_id)
        return
    owner = bad.check(_check_owner, data, principal, overrides.owner_id, f"{where}.overrides")
    bad.check(_check_stage, data, overrides.stage, f"{where}.overrides")
    change = Change(deal_id, deal_id, where, overrides=overrides)
    if owner and not principal.sees_team(effective_team(data, change)):
        bad.found.append(
            ProblemError(
                403, "this key cannot move a deal to another team", field=f"{where}.overrides.team"
            )
        )
    bad.found.extend(change_problems(data, change))
    plan.order.append(("whatif", len(plan.changes)))
    plan.changes.append(change)


def _new_item(
    plan: _Plan, data: DataIndex, principal: Principal, item: NewDealItem, i: int, bad: Problems
) -> None:
    where = f"body.deals[{i}]"
    deal = item.deal
    # A team-bound key learns nothing of other teams: another team's id is, to it, an unused
    # one (the new deal is scored under an internal key either way).
    if (
        deal.deal_id is not None
        and data.knows(deal.deal_id)
        and (principal.team is None or data.team_of(deal.deal_id) == principal.team)
    ):
        bad.found.append(
            ProblemError(
                409,
                f'deal {deal.deal_id!r} already exists; score it as {{"deal_id": ...}}',
                field=f"{where}.deal.deal_id",
            )
        )
    owner = bad.check(_check_owner, data, principal, deal.owner_id, f"{where}.deal")
    bad.check(_check_stage, data, deal.stage, f"{where}.deal")
    client_id = deal.deal_id or f"new-{i + 1}"
    # A key of its own (never shown): new deals of concurrent requests are scored together,
    # and a scoring batch holds each key once.
    change = Change(f"{NEW_PREFIX}{next(_NEW_KEYS)}", client_id, where, new=deal)
    team = effective_team(data, change) if owner else None
    if principal.team is not None and owner:
        if team is None:
            deal = deal.model_copy(update={"team": principal.team})
            change = Change(change.key, client_id, where, new=deal)
        elif team != principal.team:
            bad.found.append(
                ProblemError(
                    403, "this key scores deals of its own team only", field=f"{where}.deal.team"
                )
            )
    bad.found.extend(change_problems(data, change))
    plan.order.append(("whatif", len(plan.changes)))
    plan.changes.append(change)


def _plan(body: ScoreRequest, principal: Principal, data: DataIndex, max_batch: int) -> _Plan:
    """The request's deals checked (404, 403, 409, 422 for what was asked wrongly): every
    problem of every deal in one answer (``ProblemError.of_all``)."""
    if len(body.deals) > max_batch:
        raise ProblemError(422, f"at most {max_batch} deals per request", field="body.deals")
    plan = _Plan()
    bad = Problems()
    for i, item in enumerate(body.deals):
        if isinstance(item, KnownDeal):
            _known_item(plan, data, principal, item, i, bad)
        else:
            _new_item(plan, data, principal, item, i, bad)
    if bad.found:
        raise ProblemError.of_all(bad.found, "deals")
    return plan


def _rounds(changes: list[Change]) -> list[list[int]]:
    """The changes split into groups with no deal twice: the changes of one group apply to one
    history together (a new deal adds to its owner's pipeline); two what-ifs of one deal are
    two alternatives, scored apart."""
    rounds: list[tuple[list[int], set[str]]] = []
    for n, change in enumerate(changes):
        home = next((r for r in rounds if change.key not in r[1]), None)
        if home is None:
            rounds.append(([n], {change.key}))
        else:
            home[0].append(n)
            home[1].add(change.key)
    return [r[0] for r in rounds]


async def _whatif_records(
    snap: Snapshot, state: ServingState, changes: list[Change]
) -> list[dict[str, Any]]:
    """The score rows of the what-ifs and new deals, in the order of ``changes``."""
    data = snap.data
    assert data is not None
    out: list[dict[str, Any]] = [{} for _ in changes]
    # Each round's feature rows are built on the scoring thread, where they are scored (one
    # hop instead of a thread pool's and then the scorer's), and scored in one call with the
    # rows of the other requests waiting (rows are scored one by one: the batch changes no
    # value; tests/serving/test_live_answers.py).
    futures = [
        (
            group,
            state.scorer.submit(
                None,
                snap.models,
                data.as_of,
                batchable=True,
                build=functools.partial(live_rows, data, [changes[n] for n in group]),
                as_records=True,
            ),
        )
        for group in _rounds(changes)
    ]
    for group, future in futures:
        for n, record in zip(group, await asyncio.wrap_future(future), strict=True):
            out[n] = record
    return out


async def score_answer(
    body: ScoreRequest, principal: Principal, snap: Snapshot, state: ServingState, max_batch: int
) -> bytes:
    """The encoded ``ScoreResponse`` for ``body``; raises ``ProblemError`` for what the caller
    asked wrongly."""
    assert snap.data is not None
    data = snap.data
    plan = _plan(body, principal, data, max_batch)
    models = snap.models
    memo = snap.memo if snap.memo is not None and snap.memo.fits(models, data) else None
    plain_out: dict[str, bytes] = {}
    if memo is not None:
        for deal_id in plan.plain:
            hit = memo.get(deal_id)
            if hit is not None:
                plain_out[deal_id] = hit
    misses = list(dict.fromkeys(d for d in plan.plain if d not in plain_out))
    pending = None
    if misses:
        pending = state.scorer.submit(
            plain_rows(data, misses), models, data.as_of, batchable=True, as_records=True
        )
    whatif_out = await _whatif_records(snap, state, plan.changes) if plan.changes else []
    if pending is not None:
        for deal_id, record in zip(misses, await asyncio.wrap_future(pending), strict=True):
            encoded = encode_row(record)
            plain_out[deal_id] = encoded
            if memo is not None:
                memo.put(deal_id, encoded)
    scores = []
    for kind, n in plan.order:
        if kind == "plain":
            scores.append(plain_out[plan.plain[n]])
        else:
            row = dict(whatif_out[n])
            row["deal_id"] = plan.changes[n].client_id
            scores.append(encode_row(row))
    # Pre-encoded JSON (rows validated by ScoreRow on encoding): exactly what ScoreResponse
    # would render, without validating and encoding the rows again.
    return b"".join(
        (
            b'{"model_version":',
            dumps(str(snap.model_version)).encode(),
            b',"as_of":',
            dumps(data.as_of.isoformat()).encode(),
            b',"scores":[',
            b",".join(scores),
            b"]}",
        )
    )
