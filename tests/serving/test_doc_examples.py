"""The curl examples of README.md and docs/api.md run as written: each is parsed (not run by a
shell) and sent to the app on the test workspace, with the key the examples' own ``salesml
keys add`` line makes and ``$DEAL_ID`` an open deal that key sees."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from serving.keys import KeyStore
from tests.serving.conftest import Workspace

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "api.md"]
_BLOCK = re.compile(r"```(?:bash|sh)\n(.*?)```", re.DOTALL)
_KEYS_ADD = re.compile(r"salesml keys add ([\w-]+) --scopes ([\w:,]+)(?: --team ([\w-]+))?")


@dataclass(frozen=True)
class Curl:
    method: str
    path: str
    headers: dict[str, str]
    data: str | None


def _commands(text: str) -> list[str]:
    """The curl commands of the shell blocks, each joined into one line of shell."""
    found = []
    for block in _BLOCK.findall(text):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("curl "):
                i += 1
                continue
            command = lines[i]
            while True:
                try:
                    shlex.split(command.replace("\\\n", " "), comments=True)
                    complete = not command.endswith("\\")
                except ValueError:  # a quote still open: the command goes on
                    complete = False
                if complete or i + 1 >= len(lines):
                    break
                i += 1
                command += "\n" + lines[i]
            found.append(command.replace("\\\n", " "))
            i += 1
    return found


def _parse(command: str, values: dict[str, str]) -> Curl:
    for name, value in values.items():
        command = command.replace(f"${name}", value)
    words = shlex.split(command, comments=True)
    assert words[0] == "curl"
    method, headers, data, url = None, {}, None, None
    rest = iter(words[1:])
    for word in rest:
        if word == "-H":
            name, _, value = next(rest).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-X":
            method = next(rest)
        elif word in ("-d", "--data"):
            data = next(rest)
        elif word.startswith("-"):
            continue  # -s and the like
        else:
            url = word
    assert url is not None, command
    parts = urlsplit(url if "://" in url else f"http://{url}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return Curl(method or ("POST" if data is not None else "GET"), path, headers, data)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_curl_examples_run_as_written(
    workspace: Workspace, client: TestClient, doc: Path
) -> None:
    text = doc.read_text()
    commands = _commands(text)
    assert commands, f"no curl example in {doc.name}"
    blocks = "\n".join(_BLOCK.findall(text))
    name, scopes, team = _KEYS_ADD.search(blocks).groups()  # type: ignore[union-attr]
    _, key = KeyStore.for_home(workspace.home).add(f"{name}-{doc.stem}", scopes.split(","), team)
    deals = workspace.history.deals
    visible = deals[(deals["status"] == "open") & ((deals["team"] == team) if team else True)]
    values = {"KEY": key, "DEAL_ID": str(visible["deal_id"].iloc[0])}
    for command in commands:
        curl = _parse(command, values)
        response = client.request(curl.method, curl.path, headers=curl.headers, content=curl.data)
        assert response.status_code == 200, (command, response.text)
