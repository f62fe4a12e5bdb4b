"""Rules the code keeps (STYLE.md): functions stay small, and only the Settings classes read the
environment."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from tests.conftest import REPO_ROOT

MAX_FUNCTION_LINES = 120  # def line to last line, decorators not counted
SMALL_FUNCTIONS = ("salesml", "features", "training", "serving", "benchmarks", "tests")
NUMBA = {"jit", "njit"}  # compiled kernels: one loop nest each, kept whole for the compiler

PRODUCT = ("salesml", "features", "training", "serving")
SETTINGS = {"salesml/settings.py", "serving/api/settings.py"}  # the only readers of os.environ
ENVIRONMENT = {"environ", "getenv", "putenv", "unsetenv", "environb", "getenvb"}


def python_files(*folders: str) -> Iterator[tuple[str, ast.Module]]:
    """(path relative to the repository, parsed module) of every .py file under ``folders``."""
    for folder in folders:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT).as_posix()
            yield relative, ast.parse(path.read_text(encoding="utf-8"), relative)


def by_place(finding: str) -> tuple[str, int]:
    """Sort key of ``path:line …`` findings: by file, then line number."""
    path, line = finding.split(" ", 1)[0].split(":")
    return path, int(line)


def decorator_name(node: ast.expr) -> str:
    """``njit`` for ``@njit``, ``@numba.njit`` and ``@numba.njit(cache=True)``."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def long_functions(relative: str, module: ast.Module) -> Iterator[str]:
    for node in ast.walk(module):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if any(decorator_name(d) in NUMBA for d in node.decorator_list):
            continue
        lines = (node.end_lineno or node.lineno) - node.lineno + 1
        if lines > MAX_FUNCTION_LINES:
            yield f"{relative}:{node.lineno} {node.name} ({lines} lines)"


def environment_uses(relative: str, module: ast.Module) -> Iterator[str]:
    """Every ``os.environ`` / ``os.getenv`` / ``os.putenv`` … reached through ``os``, and every
    import of them from ``os`` (``from os import environ``)."""
    for node in ast.walk(module):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ENVIRONMENT
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            yield f"{relative}:{node.lineno} os.{node.attr}"
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            for alias in node.names:
                if alias.name in ENVIRONMENT:
                    yield f"{relative}:{node.lineno} from os import {alias.name}"


def test_no_function_is_longer_than_120_lines() -> None:
    """Numba kernels excepted; split anything longer into named steps."""
    found = [f for rel, mod in python_files(*SMALL_FUNCTIONS) for f in long_functions(rel, mod)]
    found.sort(key=by_place)
    assert not found, "functions over 120 lines:\n" + "\n".join(found)


def test_only_the_settings_classes_touch_the_environment() -> None:
    """Configuration is read once, validated, by the pydantic Settings classes; everything else
    takes it from them (and never writes the environment)."""
    found = sorted(
        (
            use
            for rel, mod in python_files(*PRODUCT)
            if rel not in SETTINGS
            for use in environment_uses(rel, mod)
        ),
        key=by_place,
    )
    assert not found, "environment read or written outside the Settings classes:\n" + "\n".join(
        found
    )


def test_the_rules_see_what_they_look_for() -> None:
    """The checks above catch the spellings they are for, and let numba kernels be."""
    body = "    pass\n"
    source = (
        "import os\nfrom os import getenv\nimport numba\n"
        "a = os.environ['X']\nb = os.getenv('Y')\nos.putenv('Z', '1')\n"
        f"@numba.njit(cache=True)\ndef kernel():\n{body * 130}"
        f"def short():\n{body * 119}"
        f"def long():\n{body * 120}"
    )
    module = ast.parse(source)
    assert [u.split(" ", 1)[1] for u in environment_uses("m.py", module)] == [
        "from os import getenv",
        "os.environ",
        "os.getenv",
        "os.putenv",
    ]
    assert [f.split(" ", 1)[1] for f in long_functions("m.py", module)] == ["long (121 lines)"]
