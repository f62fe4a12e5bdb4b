"""The synthetic CRM history: canonical shape, internal consistency, determinism, planted truth."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow.parquet as pq
import pytest

from salesml.errors import ConfigError
from salesml.schemas import TABLES
from salesml.synth import SynthSummary, catalog, effects, generate

END = date(2025, 6, 30)
END_TS = pd.Timestamp(END)
EXTRA_DEAL_COLUMNS = ["competitor", "noise_score", "noise_label"]
ARROW_KINDS = {
    "str": "string",
    "timestamp": "timestamp[us]",
    "date": "date32[day]",
    "float": "double",
    "int": "int64",
    "bool": "bool",
}


@dataclass
class History:
    summary: SynthSummary
    t: dict[str, pd.DataFrame]
    truth: pd.DataFrame
    effects: dict[str, Any]


def load(out: Path, fmt: str = "parquet") -> dict[str, pd.DataFrame]:
    frames = {}
    for name in TABLES:
        path = out / f"{name}.{fmt}"
        frames[name] = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
    return frames


def run(out: Path, n: int, seed: int, **kwargs: Any) -> History:
    summary = generate(n, seed, out, end_date=END, **kwargs)
    truth = pd.read_parquet(out / "_truth" / "deals_truth.parquet")
    doc = json.loads((out / "_truth" / "effects.json").read_text())
    return History(summary, load(out), truth, doc)


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> History:
    return run(tmp_path_factory.mktemp("synth3k"), 3000, 11)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> History:
    return run(tmp_path_factory.mktemp("synth50"), 50, 3)


def closed_deals(h: History) -> pd.DataFrame:
    d = h.t["deals"].merge(h.truth, on="deal_id")
    d = d[d.status != "open"].copy()
    d["won"] = d.status == "won"
    d["cycle"] = (d.closed_at - d.created_at).dt.total_seconds() / 86400
    return d


def check_consistency(h: History) -> None:
    t = h.t
    deals, sh, acts = t["deals"], t["stage_history"], t["activities"]
    start = pd.Timestamp(h.summary.start_date)
    # keys
    assert deals.deal_id.is_unique and acts.activity_id.is_unique and t["leads"].lead_id.is_unique
    assert not sh.duplicated(["deal_id", "changed_at", "stage"]).any()
    assert not t["marketing_spend"].duplicated(["period", "channel"]).any()
    assert t["nps_responses"].response_id.is_unique
    assert t["reps"].owner_id.is_unique and t["accounts"].account_id.is_unique
    # deals
    assert set(deals.status) <= set(catalog.STATUSES)
    is_open = deals.status == "open"
    assert deals.closed_at[is_open].isna().all() and deals.closed_at[~is_open].notna().all()
    assert (deals.closed_at[~is_open] >= deals.created_at[~is_open]).all()
    assert (deals.created_at >= start).all() and (deals.created_at < END_TS).all()
    assert (deals.closed_at.dropna() < END_TS).all()
    assert (deals.amount.dropna() >= 0).all() and deals.amount[deals.status == "won"].notna().all()
    assert set(deals.currency) == {"USD"}
    assert set(deals.stage) <= set(catalog.STAGES)
    assert (deals.stage[deals.status == "won"] == catalog.STAGES[-1]).all()
    assert deals.expected_close_date.notna().all()
    assert (pd.to_datetime(deals.expected_close_date) >= deals.created_at.dt.normalize()).all()
    assert deals.account_id.isin(t["accounts"].account_id).all()
    assert deals["product"].isin(t["products"]["product"]).all()
    assert set(deals.lead_source.dropna()) <= set(catalog.LEAD_SOURCES)
    assert (deals.team.isin(catalog.TEAMS) & deals.region.isin(catalog.REGIONS)).all()
    # child tables reference deals and stay inside each deal's life and the export
    life = deals.set_index("deal_id")
    end_of_life = life.closed_at.fillna(END_TS - pd.Timedelta(seconds=1))
    for df, col in ((sh, "changed_at"), (acts, "occurred_at")):
        assert df.deal_id.isin(deals.deal_id).all()
        assert (df[col].to_numpy() >= life.created_at.loc[df.deal_id].to_numpy()).all()
        assert (df[col].to_numpy() <= end_of_life.loc[df.deal_id].to_numpy()).all()
        assert (df[col] < END_TS).all()
    assert (sh.amount.dropna() >= 0).all() and set(sh.stage) <= set(catalog.STAGES)
    same = sh.deal_id.eq(sh.deal_id.shift())
    assert (sh.changed_at.diff()[same] > pd.Timedelta(0)).all()  # one order, no ties
    first = sh.groupby("deal_id", sort=False).head(1).set_index("deal_id").loc[deals.deal_id]
    assert (first.stage == catalog.STAGES[0]).all()
    assert (first.changed_at.to_numpy() == deals.created_at.to_numpy()).all()
    last = sh.groupby("deal_id", sort=False).tail(1).set_index("deal_id").loc[deals.deal_id]
    assert (last.stage.to_numpy() == deals.stage.to_numpy()).all()
    assert np.array_equal(last.amount.to_numpy(), deals.amount.to_numpy(), equal_nan=True)
    assert (last.expected_close_date.to_numpy() == deals.expected_close_date.to_numpy()).all()
    assert set(acts.type) <= set(catalog.ACTIVITY_TYPES)
    owners = life.owner_id.loc[acts.deal_id].to_numpy()
    assert (acts.owner_id.to_numpy() == owners).all()
    # leads
    leads = t["leads"]
    assert (leads.created_at < END_TS).all()
    conv = leads[leads.deal_id.notna()]
    assert conv.converted_at.notna().all() and conv.deal_id.is_unique
    assert conv.deal_id.isin(deals.deal_id).all()
    assert (conv.converted_at.to_numpy() <= life.created_at.loc[conv.deal_id].to_numpy()).all()
    assert (conv.source.to_numpy() == life.lead_source.loc[conv.deal_id].to_numpy()).all()
    assert leads.converted_at.notna().sum() == len(conv)
    assert not (leads.converted_at.notna() & leads.disqualified_at.notna()).any()
    dq = leads.dropna(subset=["disqualified_at"])
    assert (dq.disqualified_at >= dq.created_at).all() and (dq.disqualified_at < END_TS).all()
    tracked = deals[(deals.deal_type == "new_business") & deals.lead_source.notna()]
    assert tracked.deal_id.isin(conv.deal_id).all()
    assert set(leads.source) <= set(catalog.CHANNELS)
    # spend and NPS
    spend = t["marketing_spend"]
    assert (spend.amount >= 0).all() and set(spend.channel) <= set(catalog.CHANNELS)
    assert (pd.to_datetime(spend.period) <= END_TS).all()
    nps = t["nps_responses"]
    assert nps.score.between(0, 10).all() and (nps.responded_at < END_TS).all()
    won_accounts = deals[deals.status == "won"].groupby("account_id").closed_at.min()
    assert nps.account_id.isin(won_accounts.index).all()
    assert (nps.responded_at.to_numpy() > won_accounts.loc[nps.account_id].to_numpy()).all()
    # summary and truth
    assert h.summary.rows == {name: len(df) for name, df in t.items()}
    assert (h.truth.deal_id.to_numpy() == deals.deal_id.to_numpy()).all()


def test_files_have_exactly_the_canonical_columns_and_kinds(h: History) -> None:
    out = h.summary.out_dir
    for name, schema in TABLES.items():
        arrow = pq.read_schema(out / f"{name}.parquet")
        extra = EXTRA_DEAL_COLUMNS if name == "deals" else []
        assert arrow.names == [*schema.column_names, *extra]
        for col in schema.columns:
            assert str(arrow.field(col.name).type) == ARROW_KINDS[col.kind], (name, col.name)
    for name in ("deals_truth.parquet", "reps_truth.parquet", "effects.json"):
        assert (out / "_truth" / name).is_file()


def test_files_load_into_the_canonical_duckdb_types(h: History) -> None:
    con = duckdb.connect()
    for name, schema in TABLES.items():
        ddl = ", ".join(f'"{c.name}" {c.duckdb_type}' for c in schema.columns)
        con.execute(f"CREATE TABLE {name} ({ddl})")
        cols = ", ".join(f'"{c}"' for c in schema.column_names)
        path = h.summary.out_dir / f"{name}.parquet"
        con.execute(f"INSERT INTO {name} SELECT {cols} FROM read_parquet('{path}')")
        row = con.execute(f"SELECT count(*) FROM {name}").fetchone()
        assert row is not None and row[0] == h.summary.rows[name]


def test_history_is_internally_consistent(h: History) -> None:
    check_consistency(h)


def test_fifty_deals_work_and_stay_consistent(tiny: History) -> None:
    assert len(tiny.t["deals"]) == 50
    check_consistency(tiny)


def test_pipeline_mechanics(h: History) -> None:
    deals, sh = h.t["deals"], h.t["stage_history"]
    assert 3.0 <= len(sh) / len(deals) <= 5.0
    assert 5.0 <= len(h.t["activities"]) / len(deals) <= 12.0
    rank = sh.stage.map({s: i for i, s in enumerate(catalog.STAGES)})
    same_deal = sh.deal_id.eq(sh.deal_id.shift())
    regress = same_deal & (rank < rank.shift())
    assert 0.03 < sh.deal_id[regress].nunique() / len(deals) < 0.2
    push = (
        same_deal
        & (rank == rank.shift())
        & sh.expected_close_date.ne(sh.expected_close_date.shift())
    )
    assert sh.deal_id[push].nunique() / len(deals) > 0.2
    won = deals.deal_id[deals.status == "won"]
    reached = sh[sh.deal_id.isin(won)].groupby("deal_id").stage.nunique()
    assert (reached == len(catalog.STAGES)).all()
    lost_stage = deals.stage[deals.status == "lost"].value_counts(normalize=True)
    assert lost_stage[catalog.STAGES[0]] > lost_stage[catalog.STAGES[-1]]
    assert 0.0 < (deals.status == "open").mean() < 0.2
    assert deals.amount[deals.status == "open"].isna().any()
    departed = ~deals.owner_id.isin(h.t["reps"].owner_id)
    assert 0.0 < departed.mean() <= 0.02
    assert len(h.t["leads"]) > len(deals) and h.t["leads"].converted_at.isna().any()


def test_nothing_is_stamped_after_the_export(h: History) -> None:
    for name, schema in TABLES.items():
        for col in schema.columns:
            if col.kind == "timestamp" and col.name in h.t[name]:
                assert (h.t[name][col.name].dropna() < END_TS).all(), (name, col.name)


def test_truth_matches_the_history(h: History) -> None:
    d = h.t["deals"].merge(h.truth, on="deal_id")
    closed = d.status != "open"
    assert (d.eventual_status[closed] == d.status[closed]).all()
    assert (d.eventual_closed_at[closed] == d.closed_at[closed]).all()
    assert (d.eventual_closed_at[~closed] >= END_TS).all()
    assert set(d.eventual_status) == {"won", "lost"}
    assert d.true_win_probability.between(0, 1).all()
    cycle = (d.eventual_closed_at - d.created_at).dt.total_seconds() / 86400
    assert np.allclose(cycle, d.true_cycle_days, atol=1e-3)
    assert (d.true_cycle_days > 300).any()


def test_effects_json_states_the_ordered_planted_effects(h: History) -> None:
    win = h.effects["win_probability"]
    assert win["strength_order"][:3] == ["engagement", "rep_skill", "price_ratio"]
    sd = win["logit_sd"]
    assert sd["price_ratio"] > 1.5 * max(
        sd[k] for k in ("lead_source", "competitor", "account_size", "product", "deal_type")
    )
    assert sd["noise_score"] == 0.0 and sd["noise_label"] == 0.0
    assert win["numeric"]["noise_score"]["coefficient"] == 0.0
    assert set(win["categorical"]["noise_label"].values()) == {0.0}
    assert win["intercept"] == effects.WIN_INTERCEPT
    assert h.effects["run"]["end_date"] == END.isoformat()


def win_rates(d: pd.DataFrame, by: Any) -> npt.NDArray[np.float64]:
    return np.asarray(d.groupby(by, observed=True).won.mean(), dtype=np.float64)


def test_planted_win_effects_are_recoverable(h: History) -> None:
    d = closed_deals(h)
    assert 0.25 <= d.won.mean() <= 0.40
    assert abs(d.won.mean() - d.true_win_probability.mean()) < 0.03
    by_engagement = win_rates(d, pd.qcut(d.engagement_rate, 5))
    assert (np.diff(by_engagement) > 0).all() and by_engagement[-1] - by_engagement[0] > 0.3
    # engagement is observable: logged activities per day of life
    acts = h.t["activities"].groupby("deal_id").size().reindex(d.deal_id, fill_value=0)
    observed_rate = acts.to_numpy() / np.maximum(d.cycle.to_numpy(), 1.0)
    by_observed = win_rates(d, pd.qcut(observed_rate, 5, duplicates="drop"))
    assert by_observed[-1] - by_observed[0] > 0.2
    reps = d.groupby("owner_id").agg(rate=("won", "mean"), skill=("rep_skill", "first"))
    assert reps.rate.corr(reps.skill) > 0.5
    price = h.t["products"].set_index("product").list_price
    ratio = d.amount / price.loc[d["product"]].to_numpy()
    by_ratio = win_rates(d, pd.qcut(ratio, 5))
    assert by_ratio[0] - by_ratio[-1] > 0.08
    by_competitor = d.groupby("competitor").won.mean()
    assert by_competitor["none"] > by_competitor["BigCo"]
    overall = d.won.mean()
    assert np.abs(win_rates(d, "noise_label") - overall).max() < 0.06
    assert np.abs(win_rates(d, pd.qcut(d.noise_score, 4)) - overall).max() < 0.06
    assert abs(np.corrcoef(d.noise_score, d.won)[0, 1]) < 0.06


def test_planted_cycle_effects_are_recoverable(h: History) -> None:
    d = closed_deals(h)
    by_team = d.groupby("team").cycle.median()
    assert by_team["Enterprise"] > 1.5 * by_team["SMB"]
    by_status = d.groupby("status").cycle.median()
    assert by_status["lost"] < by_status["won"]
    price = h.t["products"].set_index("product").list_price
    cheap = d.cycle[d["product"].map(price) <= 5_000].median()
    assert d.cycle[d["product"].map(price) >= 48_000].median() > cheap
    # censoring: closed deals alone understate the cycle of all deals
    assert d.true_cycle_days.median() < h.truth.true_cycle_days.median()


def test_growth_and_seasonality(h: History) -> None:
    deals = h.t["deals"]
    first_year = (
        deals.created_at < pd.Timestamp(h.summary.start_date) + pd.Timedelta(days=365)
    ).sum()
    last_year = (deals.created_at >= END_TS - pd.Timedelta(days=365)).sum()
    assert last_year > 1.3 * first_year
    month = deals.closed_at.dropna().dt.month
    assert month.isin([3, 6, 9, 12]).mean() > 0.42
    per_month = month.value_counts()
    assert per_month[[7, 8]].mean() < per_month.mean() and per_month[12] > per_month[11]


def test_funnel_spend_and_nps(h: History) -> None:
    t = h.t
    spend, leads = t["marketing_spend"], t["leads"]
    inside = leads[leads.created_at >= pd.Timestamp(h.summary.start_date)]
    volume = inside.groupby([inside.created_at.dt.to_period("M"), "source"]).size()
    joined = spend.assign(p=pd.to_datetime(spend.period).dt.to_period("M")).set_index(
        ["p", "channel"]
    )
    joined["leads"] = volume.reindex(joined.index, fill_value=0)
    per_channel = joined.groupby(level="channel").apply(lambda g: g.amount.corr(g.leads))
    assert per_channel.median() > 0.7 and (per_channel > 0.3).all()
    deals = t["deals"]
    won = deals[(deals.status == "won") & (deals.deal_type == "new_business")]
    cac = spend.groupby("channel").amount.sum() / won.groupby("lead_source").size()
    assert cac.max() > 2 * cac.min()
    # a survey follows a won deal: match each answer to the account's latest win before it
    wins = deals[deals.status == "won"].sort_values("closed_at")[
        ["account_id", "closed_at", "product"]
    ]
    nps = pd.merge_asof(
        t["nps_responses"].sort_values("responded_at"),
        wins,
        left_on="responded_at",
        right_on="closed_at",
        by="account_id",
    )
    by_product = nps.groupby("product").score.mean()
    assert by_product.max() - by_product.min() > 0.5


def frame_hashes(out: Path) -> dict[str, int]:
    frames = load(out)
    frames["_truth"] = pd.read_parquet(out / "_truth" / "deals_truth.parquet")
    return {k: int(pd.util.hash_pandas_object(v, index=False).sum()) for k, v in frames.items()}


def test_same_arguments_give_identical_tables(tmp_path: Path) -> None:
    generate(400, 5, tmp_path / "a", end_date=END)
    generate(400, 5, tmp_path / "b", end_date=END)
    generate(400, 6, tmp_path / "c", end_date=END)
    a, b, c = (frame_hashes(tmp_path / k) for k in "abc")
    assert a == b
    assert a["deals"] != c["deals"] and a["activities"] != c["activities"]
    for name in TABLES:
        assert (tmp_path / "a" / f"{name}.parquet").read_bytes() == (
            tmp_path / "b" / f"{name}.parquet"
        ).read_bytes()
    doc_a = (tmp_path / "a" / "_truth" / "effects.json").read_text()
    assert doc_a == (tmp_path / "b" / "_truth" / "effects.json").read_text()


def test_csv_format_and_rerun_replaces_previous_files(tmp_path: Path) -> None:
    generate(200, 1, tmp_path, end_date=END)
    calls: list[tuple[str, float]] = []
    summary = generate(
        200, 1, tmp_path, end_date=END, fmt="csv", progress=lambda s, f: calls.append((s, f))
    )
    assert not list(tmp_path.glob("*.parquet"))
    frames = load(tmp_path, "csv")
    parquet_free = {name: len(df) for name, df in frames.items()}
    assert parquet_free == summary.rows
    deals = frames["deals"]
    assert list(deals.columns) == [*TABLES["deals"].column_names, *EXTRA_DEAL_COLUMNS]
    assert str(deals.created_at.iloc[0]).count(":") == 2 and "." not in str(
        deals.created_at.iloc[0]
    )
    assert calls[-1] == ("done", 1.0) and [f for _, f in calls] == sorted(f for _, f in calls)


def test_end_date_defaults_to_today(tmp_path: Path) -> None:
    summary = generate(30, 2, tmp_path)
    assert summary.end_date == date.today()
    assert summary.to_dict()["rows"]["deals"] == 30


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_deals": 0}, "n_deals"), ({"seed": -1}, "seed"), ({"fmt": "xlsx"}, "format")],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"n_deals": 10, "seed": 1, "out_dir": tmp_path, "fmt": "parquet"}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=message):
        generate(**args)
