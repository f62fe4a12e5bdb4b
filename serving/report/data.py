"""What the report reads, gathered once: scores (from score runs, or scored on the fly), open
deals, forecasts, KPIs and model health, all filtered to one team when asked."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from features.build import build_features, build_snapshots, weekly_as_of_dates
from features.history import History
from salesml.errors import SalesmlError
from salesml.kpis.pipeline import pipeline_values
from salesml.models.registry import LoadedForecast
from salesml.models.revenue.periods import period_start
from salesml.scoring import Scorer
from serving.report.baselines import Flag, model_flags
from serving.runs import RunInfo, RunStore

UNASSIGNED = "Unassigned"
JSON_COLUMNS = ("drivers", "actions")
FORECAST_HORIZON = {"month": 3, "quarter": 2}
ACTUAL_MONTHS = 18  # months of won revenue shown before the forecast
CALIBRATION_DATES = 8  # holdout-window as-of dates re-scored for the calibration plot
CALIBRATION_ROWS = 20_000


def _list(value: Any) -> list[Any]:
    """A drivers / actions cell as a list (JSON text, a list, or nothing)."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return []
        return parsed if isinstance(parsed, list) else []
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, np.ndarray):
        return list(value.tolist())
    return []


def decode_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Score rows with ``drivers`` / ``actions`` as lists and ``deal_id`` as text."""
    out = rows.copy()
    if "deal_id" in out:
        out["deal_id"] = out["deal_id"].astype(str)
    for column in JSON_COLUMNS:
        if column in out:
            out[column] = [_list(v) for v in out[column]]
    return out


@dataclass(frozen=True)
class ScoreSet:
    """The scores the report shows, and the earlier ones it compares them with."""

    current: pd.DataFrame
    source: str
    previous: pd.DataFrame | None = None
    previous_source: str | None = None
    previous_as_of: pd.Timestamp | None = None

    def for_team(self, deal_ids: pd.Index) -> ScoreSet:
        def keep(rows: pd.DataFrame | None) -> pd.DataFrame | None:
            if rows is None:
                return None
            return rows[rows["deal_id"].isin(deal_ids)].reset_index(drop=True)

        current = keep(self.current)
        assert current is not None
        return ScoreSet(
            current, self.source, keep(self.previous), self.previous_source, self.previous_as_of
        )


EMPTY_SCORES = pd.DataFrame(columns=["deal_id", "win_probability", "score", "model_version"])


def _score(history: History, win: Scorer, as_of: pd.Timestamp) -> pd.DataFrame:
    from serving.chunk import score_open_deals

    return decode_rows(score_open_deals(history, win, as_of))


def scores_from_model(
    history: History,
    win: Scorer | None,
    as_of: pd.Timestamp,
    previous_as_of: pd.Timestamp | None = None,
) -> ScoreSet:
    """Score the deals open at ``as_of`` now (and, for "what changed", those open at
    ``previous_as_of``): two scorings instead of two score runs."""
    if win is None:
        return ScoreSet(EMPTY_SCORES, "no win model registered: train one with salesml train")
    current = _score(history, win, as_of)
    source = f"scored at report time with model version {win.version}"
    if previous_as_of is None:
        return ScoreSet(current, source)
    previous = _score(history, win, previous_as_of)
    return ScoreSet(
        current,
        source,
        previous,
        f"scored at report time as of {previous_as_of:%d %b %Y}",
        previous_as_of,
    )


def _describe(run: RunInfo) -> str:
    return f"score run {run.run_id} (as of {run.as_of:%d %b %Y %H:%M}, model {run.model_version})"


def load_scores(
    history: History, win: Scorer | None, as_of: pd.Timestamp, store: RunStore | None
) -> ScoreSet:
    """Scores at ``as_of``: the score run made at that moment if there is one (what the CRM
    shows), else scored now. Previous: the newest run made at an earlier as_of, if any."""
    runs = store.list_runs() if store is not None else []
    latest_id = store.latest_id() if store is not None else None
    at = [r for r in runs if r.as_of == as_of]
    at.sort(key=lambda r: (r.run_id == latest_id, r.created_at))
    if at and store is not None:
        run = at[-1]
        current = decode_rows(store.read(run))
        source = _describe(run)
    elif win is not None:
        current = _score(history, win, as_of)
        source = (
            f"scored at report time with model version {win.version} (no score run as of "
            f"{as_of:%d %b %Y %H:%M})"
        )
    else:
        return ScoreSet(EMPTY_SCORES, "no score run and no win model: train one with salesml train")
    before = [r for r in runs if r.as_of < as_of]
    before.sort(key=lambda r: (r.as_of, r.created_at))
    if not before or store is None:
        return ScoreSet(current, source)
    prev = before[-1]
    return ScoreSet(current, source, decode_rows(store.read(prev)), _describe(prev), prev.as_of)


# --- teams ---------------------------------------------------------------------------------


def _text(series: pd.Series) -> pd.Series:
    out = series.astype("object").where(series.notna(), None)
    return out.map(lambda v: None if v is None or str(v).strip() == "" else str(v))


def deal_teams(history: History) -> pd.Series:
    """deal_id → team: the deal's own team, else its owner's (as the KPIs group), else
    ``Unassigned``."""
    deals = history.deals
    own = _text(deals["team"]) if "team" in deals else pd.Series(None, index=deals.index)
    reps = history.reps
    if len(reps) and "team" in reps:
        rep_team = dict(zip(reps["owner_id"].astype(str), _text(reps["team"]), strict=False))
        owner = deals["owner_id"].astype(str).map(rep_team)
        own = own.where(own.notna(), owner)
    own = own.where(own.notna(), UNASSIGNED)
    return pd.Series(own.to_numpy(), index=deals["deal_id"].astype(str), name="team")


def rep_names(history: History) -> dict[str, str]:
    reps = history.reps
    if not len(reps):
        return {}
    names = _text(reps["name"]) if "name" in reps else pd.Series(None, index=reps.index)
    return {
        str(o): (str(n) if n is not None else str(o))
        for o, n in zip(reps["owner_id"], names, strict=False)
    }


def rep_teams(history: History) -> dict[str, str]:
    reps = history.reps
    if not len(reps) or "team" not in reps:
        return {}
    return {
        str(o): str(t)
        for o, t in zip(reps["owner_id"], _text(reps["team"]), strict=False)
        if t is not None
    }


# --- the gathered inputs ---------------------------------------------------------------------


@dataclass
class Context:
    """Everything the sections read; built by ``gather``."""

    as_of: pd.Timestamp
    generated_at: datetime
    team: str | None
    teams: list[str]
    currency: str
    history: History
    teams_of_deals: pd.Series
    open_deals: pd.DataFrame  # deals open at as_of (team-filtered), features + scores
    scores: ScoreSet
    win: Scorer | None
    forecast: LoadedForecast | None
    forecasts: dict[str, pd.DataFrame | None]
    forecast_notes: dict[str, str]
    kpis_team: dict[str, Any] | None
    kpis_rep: dict[str, Any] | None
    kpi_note: str | None
    targets: pd.DataFrame | None
    previous_headline: dict[str, Any] | None
    names: dict[str, str]
    notes: list[str] = field(default_factory=list)
    win_metrics: dict[str, float] | None = None  # the win model's logged metrics (None: unread)
    flags: dict[str, list[Flag]] = field(default_factory=dict)  # by model: see baselines.py

    def flags_of(self, *models: str) -> list[Flag]:
        """The flags of these models (``win``, ``timing``, ``forecast``), in that order."""
        return [flag for model in models for flag in self.flags.get(model, [])]

    @property
    def team_known(self) -> bool:
        return self.team is None or self.team in self.teams

    @property
    def has_deals(self) -> bool:
        return self.team_known and bool(self.teams_of_deals.size)

    def team_deals(self) -> pd.DataFrame:
        """The history's deals of the team (all deals without a team filter)."""
        deals = self.history.deals
        if self.team is None:
            return deals
        ids = self.teams_of_deals.index[self.teams_of_deals == self.team]
        return deals[deals["deal_id"].astype(str).isin(ids)]

    def segment(self) -> str:
        return self.team if self.team is not None else "total"


def currency_of(history: History) -> str:
    if "currency" not in history.deals:
        return "USD"
    values = _text(history.deals["currency"]).dropna()
    return str(values.mode().iloc[0]).upper() if len(values) else "USD"


NO_STAGE = "(no stage)"


def open_deals_at(
    history: History, as_of: pd.Timestamp, scores: pd.DataFrame, team_of: pd.Series
) -> pd.DataFrame:
    """Deals open at ``as_of`` with their stage and amount then, by ``salesml.kpis.pipeline``'s
    rule (a missing amount is the product's list price, flagged ``amount_estimated``), and
    their score row."""
    features = build_features(history, as_of)
    keep = [c for c in ("owner_id", "stage", "amount", "days_in_stage") if c in features]
    frame = features[keep].copy()
    frame.index = frame.index.astype(str)
    frame.index.name = "deal_id"
    deals = history.deals.assign(deal_id=history.deals["deal_id"].astype(str))
    deals = deals[deals["deal_id"].isin(frame.index)]
    values = pipeline_values(
        deals, history.products, frame, current=as_of >= pd.Timestamp(history.exported_at)
    ).reindex(frame.index)
    frame["amount"] = values["amount"].astype("float64")
    frame["amount_estimated"] = values["estimated"].fillna(False).astype(bool)
    frame["stage"] = values["stage"].fillna(NO_STAGE)
    frame["owner_id"] = frame["owner_id"].astype(str) if "owner_id" in frame else None
    frame["team"] = team_of.reindex(frame.index).fillna(UNASSIGNED).to_numpy()
    frame = frame.reset_index()
    if len(scores):
        cols = [c for c in scores.columns if c not in ("owner_id", "team")]
        frame = frame.merge(scores[cols], on="deal_id", how="left")
    return frame


def forecast_for(
    history: History,
    win: Scorer | None,
    forecast: LoadedForecast | None,
    freq: str,
    as_of: pd.Timestamp,
    team: str | None,
) -> tuple[pd.DataFrame | None, str]:
    """The forecast rows of the company (or of ``team``), or None and why not."""
    if forecast is None:
        return None, "no revenue-forecast model registered: train one with salesml train"
    if freq not in forecast.bundle.freqs:
        return None, (
            f"the forecast model has no {freq}ly series (it has "
            f"{', '.join(sorted(forecast.bundle.freqs))}); retrain with salesml train"
        )
    from serving.forecast import forecast_rows

    try:
        rows = forecast_rows(
            history,
            win,
            forecast.bundle,
            freq,
            FORECAST_HORIZON[freq],
            as_of,
            "team" if team is not None else None,
        )
    except SalesmlError as exc:
        return None, f"the forecast could not be computed: {exc}"
    segment = team if team is not None else "total"
    part = rows[rows["segment"].astype(str) == segment].reset_index(drop=True)
    if part.empty:
        return None, f"the forecast model has no series for team {team!r}"
    return part, ""


def kpis_at(
    con: Any, as_of: pd.Timestamp
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    from salesml.kpis import compute_kpis

    moment = as_of.to_pydatetime()
    try:
        by_team = compute_kpis(con, by="team", period="quarter", as_of=moment)
        by_rep = compute_kpis(con, by="rep", period="quarter", as_of=moment)
    except SalesmlError as exc:
        return None, None, f"KPIs could not be computed: {exc}"
    return by_team, by_rep, None


def gather(
    history: History,
    con: Any,
    win: Scorer | None,
    forecast: LoadedForecast | None,
    *,
    team: str | None,
    targets: pd.DataFrame | None,
    previous: dict[str, Any] | None,
    as_of: pd.Timestamp | None,
    scores: ScoreSet | None,
    store: RunStore | None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Context:
    when = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(history.exported_at)
    team_of = deal_teams(history)
    teams = sorted(set(team_of.unique()) | set(rep_teams(history).values()))
    known = team is None or team in teams
    scored = scores if scores is not None else load_scores(history, win, when, store)
    ids = team_of.index if team is None else team_of.index[team_of == team]
    scored = scored.for_team(ids) if team is not None else scored
    open_deals = open_deals_at(history, when, scored.current, team_of)
    if team is not None:
        open_deals = open_deals[open_deals["team"] == team].reset_index(drop=True)
    forecasts: dict[str, pd.DataFrame | None] = {}
    notes: dict[str, str] = {}
    for freq in ("month", "quarter"):
        if known:
            forecasts[freq], notes[freq] = forecast_for(history, win, forecast, freq, when, team)
        else:
            forecasts[freq], notes[freq] = None, f"no deals for team {team!r}"
    by_team, by_rep, kpi_note = kpis_at(con, when) if con is not None else (None, None, None)
    logged = registry_metrics(win) if win is not None else {}
    return Context(
        as_of=when,
        generated_at=now(),
        team=team,
        teams=teams,
        currency=currency_of(history),
        history=history,
        teams_of_deals=team_of if team is None else team_of[team_of == team],
        open_deals=open_deals,
        scores=scored,
        win=win,
        forecast=forecast,
        forecasts=forecasts,
        forecast_notes=notes,
        kpis_team=by_team,
        kpis_rep=by_rep,
        kpi_note=kpi_note or ("no warehouse connection: KPIs left out" if con is None else None),
        targets=targets,
        previous_headline=previous,
        names=rep_names(history),
        win_metrics=logged,
        flags=model_flags(history, logged, forecast),
    )


# --- history-derived series --------------------------------------------------------------------


def won_by_period(deals: pd.DataFrame, freq: str, as_of: pd.Timestamp) -> pd.Series:
    """Won revenue per period start (closed at or before ``as_of``)."""
    won = deals[(deals["status"] == "won") & deals["closed_at"].notna()]
    won = won[won["closed_at"] <= as_of]
    if won.empty:
        return pd.Series(dtype=float, index=pd.DatetimeIndex([]))
    amount = pd.to_numeric(won["amount"], errors="coerce")
    won, amount = won[amount.notna()], amount[amount.notna()]  # no amount: no revenue to show
    if won.empty:
        return pd.Series(dtype=float, index=pd.DatetimeIndex([]))
    starts = won["closed_at"].map(lambda t: period_start(t, freq))
    return amount.groupby(starts.to_numpy()).sum().sort_index()


def close_dates_at(history: History, when: pd.Timestamp, deal_ids: pd.Index) -> pd.Series:
    """Each deal's CRM expected close date as known at ``when`` (its last stage-history row at
    or before ``when``)."""
    sh = history.stage_history
    if sh.empty or "expected_close_date" not in sh:
        return pd.Series(dtype="datetime64[ns]")
    rows = sh[sh["deal_id"].astype(str).isin(deal_ids) & (sh["changed_at"] <= when)]
    last = rows.sort_values("changed_at").groupby("deal_id").tail(1)
    return pd.Series(
        pd.to_datetime(last["expected_close_date"]).to_numpy(), index=last["deal_id"].astype(str)
    )


def holdout_window(win: Scorer) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The holdout window the model was evaluated on (bundle metadata ``data_window``)."""
    text = str(win.bundle.metadata.get("data_window", {}).get("holdout", ""))
    parts = [p.strip() for p in text.replace("–", "|").split("|")]
    if len(parts) != 2:
        return None
    try:
        return pd.Timestamp(parts[0]), pd.Timestamp(parts[1])
    except ValueError:
        return None


def calibration_sample(
    history: History, win: Scorer, team: str | None, team_of: pd.Series
) -> tuple[pd.DataFrame, str]:
    """Predicted win probability and outcome of deals open in the model's holdout window
    (re-scored at up to ``CALIBRATION_DATES`` of its weekly as-of dates), and a description."""
    window = holdout_window(win)
    if window is None:
        return pd.DataFrame(columns=["p", "won"]), "the model records no holdout window"
    dates = weekly_as_of_dates(history, window[0], window[1])
    if not dates:
        return pd.DataFrame(columns=["p", "won"]), "the holdout window holds no as-of dates"
    step = max(1, int(np.ceil(len(dates) / CALIBRATION_DATES)))
    chosen = dates[::step]
    snaps = build_snapshots(history, chosen)
    snaps = snaps[snaps["label_won"].notna()]
    if team is not None:
        snaps = snaps[team_of.reindex(snaps["deal_id"].astype(str)).to_numpy() == team]
    if len(snaps) > CALIBRATION_ROWS:
        snaps = snaps.sample(CALIBRATION_ROWS, random_state=0)
    if snaps.empty:
        return pd.DataFrame(columns=["p", "won"]), "no deal with a known outcome in the window"
    p = win.bundle.predict(snaps.set_index("deal_id"))["win_probability"].to_numpy()
    sample = pd.DataFrame({"p": p, "won": snaps["label_won"].to_numpy(dtype=float)})
    text = (
        f"{len(sample):,} snapshots of deals open at {len(chosen)} weekly dates of the holdout "
        f"window ({window[0]:%d %b %Y} – {window[1]:%d %b %Y}), outcomes as known now"
    )
    return sample, text


def registry_metrics(win: Scorer) -> dict[str, float]:
    """The win model's logged run metrics (holdout_*, baseline_*, timing_*), or {}."""
    try:
        from salesml.models.registry import WIN_MODEL_NAME, configure

        client = configure()
        version = client.get_model_version(WIN_MODEL_NAME, win.version)
        if not version.run_id:
            return {}
        return {str(k): float(v) for k, v in client.get_run(version.run_id).data.metrics.items()}
    except Exception:  # a registry that cannot be reached leaves the table to the bundle
        return {}
