"""Score runs: immutable, atomically published, killed-and-rerun safe, incremental."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.build import build_features
from salesml.cli import app
from serving import runs
from serving.batch import run_batch
from serving.runs import RunStore
from tests.serving.conftest import Workspace


def _store(workspace: Workspace, tmp_path: Path) -> RunStore:
    return RunStore(workspace.copy_home(tmp_path / "home"))


def test_a_run_holds_every_open_deal_once(workspace: Workspace) -> None:
    store = RunStore(workspace.home)
    run = store.info("r1")
    assert run is not None and store.latest_id() == "r1"
    rows = store.read(run)
    open_ids = set(build_features(workspace.history, workspace.history.exported_at).index)
    assert rows["deal_id"].is_unique and set(rows["deal_id"]) == open_ids
    assert run.rows == len(open_ids) and run.model_version == "1"
    assert rows["input_hash"].str.fullmatch(r"[0-9a-f]{16}").all()


def test_killed_run_leaves_nothing_visible_and_rerun_completes(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(workspace, tmp_path)
    history, model = workspace.history, workspace.model
    real = runs.PartsWriter.write

    def crash_after_first_part(self: runs.PartsWriter, rows: pd.DataFrame) -> None:
        real(self, rows.iloc[: self.part_rows])
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(runs.PartsWriter, "write", crash_after_first_part)
    with pytest.raises(KeyboardInterrupt):
        run_batch(history, model, history.exported_at, store, run_id="r2", part_rows=100)
    assert store.info("r2") is None and store.latest_id() == "r1"
    assert [r.run_id for r in store.list_runs()] == ["r1"]
    # A harder kill leaves the hidden folder behind: readers ignore it, the next batch removes it.
    (store.root / ".tmp-r2-deadbeef" / "scores").mkdir(parents=True)
    monkeypatch.setattr(runs.PartsWriter, "write", real)
    result = run_batch(history, model, history.exported_at, store, run_id="r2", part_rows=100)
    assert store.latest_id() == "r2"
    assert [r.run_id for r in store.list_runs()] == ["r1", "r2"]
    assert not [p for p in store.root.iterdir() if p.name.startswith((".tmp-", ".trash-"))]
    rows = store.read(result.run)
    assert len(list((result.run.path / "scores").glob("part-*.parquet"))) > 1
    assert rows["deal_id"].is_unique and len(rows) == store.info("r1").rows  # type: ignore[union-attr]
    pd.testing.assert_frame_equal(
        rows.drop(columns=[]),
        store.read(store.info("r1")),
        check_dtype=False,  # type: ignore[arg-type]
    )


def test_rerun_of_a_run_id_replaces_only_that_run(workspace: Workspace, tmp_path: Path) -> None:
    store = _store(workspace, tmp_path)
    history, model = workspace.history, workspace.model
    run_batch(history, model, history.exported_at, store, run_id="r2")
    before_r1 = (store.root / "r1" / "run.json").read_text()
    first = store.info("r2")
    again = run_batch(history, model, history.exported_at, store, run_id="r2")
    assert (store.root / "r1" / "run.json").read_text() == before_r1
    assert again.run.created_at != first.created_at  # type: ignore[union-attr]
    assert [r.run_id for r in store.list_runs()] == ["r1", "r2"]
    # a crash between the two renames of a rerun is repaired by the next batch
    (store.root / "r2").replace(store.root / ".trash-r2-0000")
    assert store.latest() is not None and store.latest().run_id == "r1"  # type: ignore[union-attr]
    with store.writing():
        pass
    assert store.info("r2") is not None


def test_changed_rescores_only_changed_deals(workspace: Workspace, tmp_path: Path) -> None:
    store = _store(workspace, tmp_path)
    history, model = workspace.history, workspace.model
    same = run_batch(history, model, history.exported_at, store, run_id="r2", changed=True)
    assert same.rescored == 0 and same.copied == store.info("r1").rows  # type: ignore[union-attr]
    # Change one open deal's activity: only that deal's features change.
    features = build_features(history, history.exported_at)
    deal = features.index[0]
    extra = pd.DataFrame(
        {
            "deal_id": [deal],
            "occurred_at": [history.exported_at],
            "type": ["call"],
            "owner_id": [features.loc[deal, "owner_id"]],
        }
    )
    from dataclasses import replace

    changed_history = replace(
        history,
        activities=pd.concat(
            [history.activities, extra.astype(history.activities.dtypes.to_dict())],
            ignore_index=True,
        ),
    )
    result = run_batch(
        changed_history, model, history.exported_at, store, run_id="r3", changed=True
    )
    assert result.rescored == 1 and result.copied == len(features) - 1
    rows = store.read(result.run).set_index("deal_id")
    full = store.read(store.info("r1")).set_index("deal_id")  # type: ignore[arg-type]
    assert rows.index.is_unique and set(rows.index) == set(full.index)
    assert rows.loc[deal, "input_hash"] != full.loc[deal, "input_hash"]
    # a full rescore of the changed history gives exactly the incremental rows
    everything = run_batch(changed_history, model, history.exported_at, store, run_id="r4")
    pd.testing.assert_frame_equal(
        store.read(everything.run).set_index("deal_id").sort_index(), rows.sort_index()
    )


def test_score_cli_writes_a_run_and_exports(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = workspace.copy_home(tmp_path / "home")
    monkeypatch.setenv("SALESML_HOME", str(home))
    runner = CliRunner()
    out = tmp_path / "scores.csv"
    first = runner.invoke(app, ["score", "--all", "--run-id", "cli-1", "--out", str(out), "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["run_id"] == "cli-1" and summary["rescored"] == summary["rows"]
    assert RunStore(home).latest_id() == "cli-1"
    assert "input_hash" not in pd.read_csv(out).columns
    second = runner.invoke(app, ["score", "--changed", "--json"])
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["rescored"] == 0
    bad = runner.invoke(app, ["score", "--run-id", "../escape"])
    assert bad.exit_code != 0 and "invalid run id" in bad.output
    both = runner.invoke(app, ["score", "--all", "--changed"])
    assert both.exit_code != 0


def test_deal_history_across_runs(workspace: Workspace, tmp_path: Path) -> None:
    store = _store(workspace, tmp_path)
    run_batch(workspace.history, workspace.model, workspace.history.exported_at, store, run_id="r2")
    deal = store.read(store.info("r1"))["deal_id"].iloc[0]  # type: ignore[arg-type]
    history = store.deal_history(deal)
    assert history["run_id"].tolist() == ["r1", "r2"]


def test_scoring_in_slices_gives_the_same_rows(workspace: Workspace) -> None:
    """The local engine scores big batches slice by slice: same rows as one pass."""
    from serving.batch import score_in_chunks
    from serving.chunk import score_chunk

    history = workspace.history
    features = build_features(history, history.exported_at)
    features.index = features.index.astype(str)
    whole = score_chunk(features, workspace.model, history.exported_at)
    sliced = score_in_chunks(features, workspace.model, history.exported_at, chunk_rows=37)
    assert len(features) > 37
    pd.testing.assert_frame_equal(whole, sliced)


def test_changed_follows_inputs_not_the_clock(workspace: Workspace, tmp_path: Path) -> None:
    """A day later with no new records everything is copied (rows keep the as-of they were
    scored at); past --max-age everything is rescored; an account edit rescores its deals."""
    from dataclasses import replace

    store = _store(workspace, tmp_path)
    history, model = workspace.history, workspace.model
    first = store.read(store.info("r1"))  # type: ignore[arg-type]
    next_day = history.exported_at + pd.Timedelta(days=1)
    later = run_batch(history, model, next_day, store, run_id="r2", changed=True)
    open_next_day = set(build_features(history, next_day).index)
    assert later.rescored == 0 and later.copied == len(open_next_day)
    rows = store.read(later.run)
    assert set(rows["deal_id"]) == open_next_day
    assert (pd.to_datetime(rows["as_of"]) == history.exported_at).all()
    week = history.exported_at + pd.Timedelta(days=8)
    stale = run_batch(history, model, week, store, run_id="r3", changed=True, max_age_days=7)
    assert stale.copied == 0 and stale.rescored == len(build_features(history, week))
    # the same export re-imported in another row order changes no hash
    shuffled = replace(
        history,
        activities=history.activities.sample(frac=1.0, random_state=1),
        stage_history=history.stage_history.sample(frac=1.0, random_state=2),
    )
    same = run_batch(shuffled, model, week, store, run_id="r4", changed=True)
    assert same.rescored == 0
    # an edit to one account's record rescores exactly that account's open deals
    features = build_features(history, week)
    account = features["account_id"].value_counts().index[0]
    accounts = history.accounts.copy()
    accounts.loc[accounts["account_id"] == account, "employees"] += 1
    edited = run_batch(
        replace(history, accounts=accounts), model, week, store, run_id="r5", changed=True
    )
    assert edited.rescored == int((features["account_id"] == account).sum()) > 0
    assert len(first) > 0


def test_worker_processes_give_the_same_rows(workspace: Workspace) -> None:
    from serving.batch import score_in_chunks
    from serving.changes import input_hashes

    history, model = workspace.history, workspace.model
    features = build_features(history, history.exported_at)
    hashes = input_hashes(history, features.index, history.exported_at, model.version)
    one = score_in_chunks(features, model, history.exported_at, hashes, workers=1)
    pool = score_in_chunks(
        features, model, history.exported_at, hashes, chunk_rows=40, workers=2, parallel_from=0
    )
    pd.testing.assert_frame_equal(pool, one)


def test_features_built_in_slices_give_the_same_run(workspace: Workspace, tmp_path: Path) -> None:
    """The batch builds and scores the open deals slice by slice (here 37 deals, in 2 worker
    processes, and incrementally): the same rows as run r1, built in one slice."""
    from serving import batch

    store = _store(workspace, tmp_path)
    history, model = workspace.history, workspace.model
    first = store.read(store.info("r1")).set_index("deal_id").sort_index()  # type: ignore[arg-type]
    assert len(first) > 2 * 37
    sliced = run_batch(history, model, history.exported_at, store, run_id="r2", feature_rows=37)
    rows = store.read(sliced.run).set_index("deal_id").sort_index()
    pd.testing.assert_frame_equal(rows, first)
    pool = batch.score_frames(
        batch._feature_slices(history, history.exported_at, pd.Index([]), 37),
        len(first),
        model,
        history.exported_at,
        chunk_rows=20,
        workers=2,
        parallel_from=0,
    )
    scored = pd.concat(list(pool), ignore_index=True).set_index("deal_id")
    pd.testing.assert_frame_equal(scored, first.drop(columns=["input_hash"]))
    night = run_batch(
        history, model, history.exported_at, store, run_id="r3", changed=True, feature_rows=37
    )
    assert night.rescored == 0 and night.copied == len(first)


def test_a_compact_history_gives_the_same_run(workspace: Workspace, tmp_path: Path) -> None:
    """``salesml score`` loads the stage history and activities with categorical text columns
    (``load_history(compact=True)``): the same features, input hashes and rows as run r1,
    scored from the history loaded as strings."""
    from features.build import build_feature_slices
    from features.history import load_history
    from salesml.warehouse import connect
    from serving.changes import input_hashes

    home = workspace.copy_home(tmp_path / "home")
    store = RunStore(home)
    con = connect(home / "warehouse.duckdb", read_only=True)
    try:
        compact = load_history(con, compact=True)
    finally:
        con.close()
    history = workspace.history
    for name, column in (("activities", "deal_id"), ("stage_history", "stage")):
        assert isinstance(getattr(compact, name)[column].dtype, pd.CategoricalDtype)
        assert not isinstance(getattr(history, name)[column].dtype, pd.CategoricalDtype)
    as_of = history.exported_at
    whole = build_features(history, as_of)
    pd.testing.assert_frame_equal(pd.concat(build_feature_slices(compact, as_of, 50)), whole)
    pd.testing.assert_series_equal(
        input_hashes(compact, whole.index, as_of, "v1"),
        input_hashes(history, whole.index, as_of, "v1"),
    )
    first = store.read(store.info("r1")).set_index("deal_id").sort_index()  # type: ignore[arg-type]
    again = run_batch(compact, workspace.model, as_of, store, run_id="r2")
    pd.testing.assert_frame_equal(store.read(again.run).set_index("deal_id").sort_index(), first)
