"""Every JSON the product writes is strict RFC 8259: no NaN, no Infinity."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from salesml import jsonio
from salesml.cli import app, print_json


def strict_loads(text: str) -> Any:
    """``json.loads`` that refuses the NaN / Infinity extensions, as other languages do."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_and_numpy_scalars_plain_numbers() -> None:
    value = {
        "nan": math.nan,
        "inf": -math.inf,
        "np": np.float32(1.5),
        "npnan": np.float64("nan"),
        "int": np.int64(3),
        "flag": np.bool_(True),
        "rows": [1.0, float("inf"), (2, math.nan)],
    }
    assert strict_loads(jsonio.dumps(value)) == {
        "nan": None,
        "inf": None,
        "np": 1.5,
        "npnan": None,
        "int": 3,
        "flag": True,
        "rows": [1.0, None, [2, None]],
    }


def test_cli_json_output_is_strict(capsys: pytest.CaptureFixture[str]) -> None:
    """``--json`` output goes through one writer: an undefined figure prints as null."""
    print_json({"growth": math.inf, "win_rate": math.nan, "rows": [{"aov": np.float64("inf")}]})
    assert strict_loads(capsys.readouterr().out) == {
        "growth": None,
        "win_rate": None,
        "rows": [{"aov": None}],
    }


def test_kpis_json_is_strict_where_a_figure_is_undefined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One won and one open deal: growth, cycle spread and conversion trends are undefined."""
    monkeypatch.setenv("SALESML_HOME", str(tmp_path / "home"))
    export = tmp_path / "export"
    export.mkdir()
    (export / "deals.csv").write_text(
        "deal_id,created_at,status,closed_at,amount,owner_id\n"
        "D1,2025-01-05,won,2025-02-10,1000,R1\n"
        "D2,2025-01-06,open,,,R1\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    assert runner.invoke(app, ["import", str(export), "--json"]).exit_code == 0
    result = runner.invoke(app, ["kpis", "--json", "--by", "rep", "--period", "quarter"])
    assert result.exit_code == 0, result.output
    strict_loads(result.stdout)


def test_bundle_documents_are_strict_json_and_read_back_float_for_float() -> None:
    """A model bundle's -inf log prior is a bin the model rules out, not a missing value: it is
    written as strict JSON that says what it is, and read back exactly."""
    doc = {
        "bin_log_priors": [0.0, -math.inf, np.float64(-1.5)],
        "metrics": {"ece": math.nan, "top": math.inf},
        "plain": {"a": 1, "tagless": {"$float": "not a number name"}},
        "array": np.array([1.0, np.nan]),
    }
    text = jsonio.dumps_exact(doc, indent=2)
    strict_loads(text)  # no NaN / Infinity tokens
    back = jsonio.loads_exact(text)
    assert back["bin_log_priors"] == [0.0, -math.inf, -1.5]
    assert math.isnan(back["metrics"]["ece"]) and back["metrics"]["top"] == math.inf
    assert back["plain"] == {"a": 1, "tagless": {"$float": "not a number name"}}
    assert back["array"][0] == 1.0 and math.isnan(back["array"][1])
    # documents written before (bare NaN tokens) still read
    assert math.isnan(jsonio.loads_exact('{"x": NaN}')["x"])


def test_an_error_with_json_output_is_json_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A script reading ``--json`` gets the reason on stdout as ``{"error": ...}`` (and the
    human line on stderr), never an empty stdout."""
    monkeypatch.setenv("SALESML_HOME", str(tmp_path / "empty"))
    result = CliRunner().invoke(app, ["kpis", "--json"])
    assert result.exit_code == 1
    assert "import" in strict_loads(result.stdout)["error"]
    assert "error:" in result.stderr
