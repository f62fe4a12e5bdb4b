"""``salesml keys``: the key is printed once, stored hashed, listed without secrets, revoked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from salesml.cli import app
from serving.keys import KeyStore


def test_keys_add_list_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESML_HOME", str(tmp_path))
    runner = CliRunner()
    added = runner.invoke(
        app, ["keys", "add", "crm-plugin", "--scopes", "scores:read,scores:write", "--team", "EMEA"]
    )
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip().splitlines()[-1]
    assert secret.startswith("sml_")
    stored = (tmp_path / "keys.json").read_text()
    # sml_<key id>_<secret>: the secret itself may hold "_" (URL-safe base64)
    assert secret not in stored and secret.split("_", 2)[2] not in stored
    assert (tmp_path / "keys.json").stat().st_mode & 0o077 == 0
    key = KeyStore.for_home(tmp_path).verify(secret)
    assert key is not None and key.team == "EMEA" and key.scopes == ("scores:read", "scores:write")
    assert (
        KeyStore.for_home(tmp_path).verify(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
        is None
    )
    listed = runner.invoke(app, ["keys", "list", "--json"])
    assert listed.exit_code == 0 and secret not in listed.stdout
    assert json.loads(listed.stdout)[0]["name"] == "crm-plugin"
    revoked = runner.invoke(app, ["keys", "revoke", key.key_id])
    assert revoked.exit_code == 0
    assert KeyStore.for_home(tmp_path).verify(secret) is None
    bad = runner.invoke(app, ["keys", "add", "x", "--scopes", "root"])
    assert bad.exit_code != 0 and "unknown scope" in bad.output
    for command in (["serve", "--help"], ["keys", "--help"], ["score", "--help"]):
        assert runner.invoke(app, command).exit_code == 0


def test_keys_list_shows_whole_ids_on_a_narrow_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from salesml import cli

    monkeypatch.setenv("SALESML_HOME", str(tmp_path))
    store = KeyStore.for_home(tmp_path)
    ids = [store.add(f"plugin-{n}", ["scores:read"], team="Enterprise")[0].key_id for n in (1, 2)]
    monkeypatch.setattr(cli.console, "_width", 60)
    listed = CliRunner().invoke(app, ["keys", "list"])
    assert listed.exit_code == 0, listed.output
    for key_id in ids:
        assert key_id in listed.stdout


def test_a_key_bound_to_a_team_the_data_does_not_have_is_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in --team would make a key that silently sees nothing: say so."""
    from salesml.warehouse import connect

    monkeypatch.setenv("SALESML_HOME", str(tmp_path))
    con = connect(tmp_path / "warehouse.duckdb")
    con.execute("UPDATE deals SET team = team")  # the schema exists
    con.execute(
        "INSERT INTO deals (deal_id, created_at, status, team) "
        "VALUES ('D1', TIMESTAMP '2025-01-01', 'open', 'Enterprise')"
    )
    con.close()
    typo = CliRunner().invoke(
        app, ["keys", "add", "x", "--scopes", "scores:read", "--team", "Entreprise"]
    )
    assert typo.exit_code == 0 and "no deals of team 'Entreprise'" in typo.stderr
    assert "Enterprise" in typo.stderr
    right = CliRunner().invoke(
        app, ["keys", "add", "y", "--scopes", "scores:read", "--team", "Enterprise"]
    )
    assert right.exit_code == 0 and "warning" not in right.stderr
