"""End to end: train (win, timing, forecast) → forecast → score, on a pipeline history and on a
won-only order history imported through a mapping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from salesml.cli import app
from salesml.models.revenue.reconcile import to_cents
from tests.helpers.history import SyntheticWorkspace, synthetic_workspace

SHOPIFY_MAPPING = Path(__file__).parent / "fixtures" / "mapping" / "shopify" / "shopify.yaml"
BOUNDS = ("lower_95", "lower_80", "forecast", "upper_80", "upper_95")


def _env(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    monkeypatch.setenv("SALESML_HOME", str(root / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")


def _json(args: list[str]) -> object:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"not JSON: {result.stdout[:500]!r}") from exc


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticWorkspace:
    return synthetic_workspace(tmp_path_factory, deals=3000, seed=3, end_date=date(2026, 3, 31))


@pytest.fixture(scope="module")
def pipeline_workspace(
    tmp_path_factory: pytest.TempPathFactory, synthetic: SyntheticWorkspace
) -> Iterator[tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("forecast")
    synthetic.copy_home(root / "home")
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, root)
        trained = _json(["train", "--backtest-origins", "4", "--json"])
        assert isinstance(trained, dict)
        yield root, trained


def test_train_registers_win_timing_and_forecast(pipeline_workspace: tuple[Path, dict]) -> None:
    _, trained = pipeline_workspace
    assert trained["win_model"]["alias"] == "champion"
    timing = trained["timing_model"]["holdout"]
    assert 0.6 <= timing["coverage_80"] <= 0.95
    forecast = trained["forecast_model"]
    assert forecast["alias"] == "champion"
    assert set(forecast["backtest"]) == {"week", "month", "quarter"}
    for components in forecast["backtest"].values():
        assert {"pipeline", "series", "blend", "seasonal_naive"} <= set(components)


@pytest.mark.parametrize("by", ["team", "region", "product"])
def test_forecast_segments_add_up_to_the_total_to_the_cent(
    pipeline_workspace: tuple[Path, dict], by: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = pipeline_workspace
    _env(monkeypatch, root)
    rows = pd.DataFrame(
        _json(
            [
                "forecast",
                "--freq",
                "month",
                "--horizon",
                "3",
                "--by",
                by,
                "--as-of",
                "2026-03-31",
                "--json",
            ]
        )
    )
    assert list(rows.columns) == [
        "period_start",
        "segment",
        "forecast",
        "lower_80",
        "upper_80",
        "lower_95",
        "upper_95",
    ]
    assert sorted(rows["period_start"].unique()) == ["2026-03-01", "2026-04-01", "2026-05-01"]
    for _, part in rows.groupby("period_start"):
        total = part[part["segment"] == "total"]
        segments = part[part["segment"] != "total"]
        assert len(total) == 1 and len(segments) >= 2
        assert to_cents(segments["forecast"]).sum() == to_cents(total["forecast"]).sum()
    ordered = rows[list(BOUNDS)].to_numpy()
    assert np.all(np.diff(ordered, axis=1) >= -1e-9)
    assert (rows["lower_95"] >= 0).all()


def test_current_period_counts_revenue_already_won(
    pipeline_workspace: tuple[Path, dict],
    synthetic: SyntheticWorkspace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Late in a month, the month's lower bound is at least what was already won in it."""
    root, _ = pipeline_workspace
    _env(monkeypatch, root)
    deals = pd.read_parquet(synthetic.export / "deals.parquet")
    won = deals[
        (deals["status"] == "won")
        & (deals["closed_at"] >= pd.Timestamp("2026-03-01"))
        & (deals["closed_at"] < pd.Timestamp("2026-03-25"))
    ]
    rows = _json(
        ["forecast", "--freq", "month", "--horizon", "1", "--as-of", "2026-03-25", "--json"]
    )
    assert isinstance(rows, list)
    assert rows[0]["lower_95"] >= won["amount"].sum() - 0.01


def test_score_rows_carry_timing(
    pipeline_workspace: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = pipeline_workspace
    _env(monkeypatch, root)
    out = root / "scores.parquet"
    result = CliRunner().invoke(app, ["score", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(out)
    for column in (
        "p_close_30d",
        "p_close_60d",
        "p_close_90d",
        "p_close_this_quarter",
        "expected_close_date",
        "expected_revenue",
    ):
        assert column in rows, column
    assert (rows["p_close_30d"] <= rows["p_close_90d"] + 1e-12).all()
    assert (rows["p_close_90d"] <= rows["win_probability"] + 1e-12).all()


def test_api_serves_the_same_forecast_and_scopes_it_to_the_team(
    pipeline_workspace: tuple[Path, dict],
    synthetic: SyntheticWorkspace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastapi.testclient import TestClient

    from serving.api.app import create_app
    from serving.api.settings import ApiSettings
    from serving.keys import KeyStore

    root, _ = pipeline_workspace
    _env(monkeypatch, root)
    home = root / "home"
    assert CliRunner().invoke(app, ["score", "--all"]).exit_code == 0
    store = KeyStore.for_home(home)
    everyone = store.add("all", ["forecast:read"])[1]
    teams = pd.read_parquet(synthetic.export / "deals.parquet")["team"].dropna().unique()
    mine = store.add("team", ["forecast:read"], team=str(teams[0]))[1]
    settings = ApiSettings(home=home, poll_seconds=0, load_in_background=False)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        full = client.get(
            "/v1/forecast?freq=month&horizon=2&by=team", headers={"X-API-Key": everyone}
        )
        assert full.status_code == 200, full.text
        rows = pd.DataFrame(full.json()["rows"])
        assert set(rows["segment"]) == {"total", *map(str, teams)}
        scoped = client.get("/v1/forecast?freq=month&horizon=2", headers={"X-API-Key": mine})
        assert scoped.status_code == 200, scoped.text
        assert {r["segment"] for r in scoped.json()["rows"]} == {str(teams[0])}


def test_unknown_frequency_is_refused_with_the_choices(
    pipeline_workspace: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = pipeline_workspace
    _env(monkeypatch, root)
    result = CliRunner().invoke(app, ["forecast", "--freq", "fortnight"])
    assert result.exit_code == 2
    assert "fortnight" in result.output and "month" in result.output


def _orders(path: Path, days: int = 900, seed: int = 0) -> Path:
    """A shop's order export: about 3 orders a day for ``days`` days, growing, with a December
    peak, in the Shopify layout the mapping fixture reads."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2023-07-01")
    rows = []
    number = 1000
    for d in range(days):
        day = start + pd.Timedelta(days=d)
        rate = 3.0 * (1 + 0.3 * d / 365) * (1.6 if day.month == 12 else 1.0)
        for _ in range(rng.poisson(rate)):
            number += 1
            stamp = day + pd.Timedelta(minutes=int(rng.integers(0, 24 * 60)))
            total = round(float(rng.lognormal(4.5, 0.6)), 2)
            rows.append(
                {
                    "Name": f"#{number}",
                    "Email": f"c{rng.integers(0, 800)}@example.com",
                    "Financial Status": "paid",
                    "Paid at": f"{stamp:%Y-%m-%d %H:%M:%S} -0500",
                    "Currency": "USD",
                    "Subtotal": total,
                    "Shipping": 0,
                    "Taxes": 0,
                    "Total": total,
                    "Discount Code": "",
                    "Created at": f"{stamp:%Y-%m-%d %H:%M:%S} -0500",
                    "Lineitem quantity": 1,
                    "Lineitem name": str(
                        rng.choice(["Rain Shell", "Daypack 22L", "Trail Runner 2"])
                    ),
                    "Billing Country": "US",
                    "Source": "web",
                    "Tags": "",
                    "Id": number,
                }
            )
    path.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path / "orders_export.csv", index=False)
    return path / "orders_export.csv"


def test_won_only_order_history_is_forecast_from_the_series_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, tmp_path)
    orders = _orders(tmp_path / "shop")
    imported = CliRunner().invoke(
        app, ["import", str(orders), "--format", "mapping", "--mapping", str(SHOPIFY_MAPPING)]
    )
    assert imported.exit_code == 0, imported.output
    trained = _json(["train", "--backtest-origins", "6", "--json"])
    assert isinstance(trained, dict)
    assert "skipped" in trained["win_model"]  # no lost or open deals: nothing to score
    assert trained["forecast_model"]["backtest"]["month"]["blend"]["wape_total"] < 0.5
    rows = pd.DataFrame(
        _json(
            [
                "forecast",
                "--freq",
                "month",
                "--horizon",
                "3",
                "--by",
                "product",
                "--as-of",
                "2025-12-18",
                "--json",
            ]
        )
    )
    total = rows[rows["segment"] == "total"]
    assert len(total) == 3 and (total["forecast"] > 0).all()
    for _, part in rows.groupby("period_start"):
        segments = part[part["segment"] != "total"]
        total_cents = to_cents(part[part["segment"] == "total"]["forecast"]).sum()
        assert to_cents(segments["forecast"]).sum() == total_cents


def test_forecast_defaults_to_the_data_as_of_not_the_calendar(
    pipeline_workspace: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history ends on 2026-03-31: the forecast starts in March 2026 whatever today is,
    and an as-of past the data's end is answered with a warning."""
    root, _ = pipeline_workspace
    _env(monkeypatch, root)
    rows = _json(["forecast", "--freq", "month", "--horizon", "2", "--json"])
    assert isinstance(rows, list)
    assert min(r["period_start"] for r in rows) == "2026-03-01"
    late = CliRunner().invoke(
        app, ["forecast", "--freq", "month", "--horizon", "1", "--as-of", "2027-06-01"]
    )
    assert late.exit_code == 0, late.output
    assert "after the data's latest event (2026-03-" in late.stderr
