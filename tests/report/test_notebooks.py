"""The notebooks in notebooks/ run from top to bottom on the project's own Python (nbclient),
so they never rot, and they are committed without outputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("01_walkthrough.ipynb", "02_model_quality.ipynb")
DEALS = "2000"  # SALESML_NOTEBOOK_DEALS for the test runs (the notebooks default to 2,500)
# Appended to the executed copy: which Python the kernel really runs.
PROBE = "import sys\nprint(sys.prefix)"


def test_notebooks_are_committed_without_outputs() -> None:
    found = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert set(NAMES) <= set(found), found
    for name in found:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code, f"{name} has no code cells"
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            assert cell.outputs == [], f"{name} cell {i} is committed with outputs"
            assert cell.execution_count is None, f"{name} cell {i} has an execution count"
            assert "execution" not in cell.metadata, f"{name} cell {i} has execution timings"


def _runs_this_python(argv: list[str]) -> bool:
    """Whether a kernelspec's command starts this interpreter (the project's venv).

    jupyter_client replaces a bare ``python``/``python3``/``python3.X`` with ``sys.executable``;
    an absolute path must be this venv's own (not resolved: the venv's python is a symlink to
    the base interpreter, which does not see the venv's packages)."""
    major, minor = sys.version_info[:2]
    if argv[0] in {"python", f"python{major}", f"python{major}.{minor}"}:
        return True
    return Path(argv[0]).absolute() == Path(sys.executable).absolute()


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python3`` when it runs this venv's Python, else a kernelspec installed for the test
    into a temporary prefix (found through ``JUPYTER_PATH``)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        spec = None
    if spec is not None and _runs_this_python(spec.argv):
        yield "python3"
        return
    prefix = tmp_path_factory.mktemp("jupyter")
    subprocess.run(
        [
            *(sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix)),
            *("--name", "salesml-test", "--display-name", "salesml (test)"),
        ],
        check=True,
        capture_output=True,
    )
    kernels = str(prefix / "share" / "jupyter")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(
            "JUPYTER_PATH", os.pathsep.join(filter(None, [kernels, os.getenv("JUPYTER_PATH")]))
        )
        yield "salesml-test"


def _outputs(nb: nbformat.NotebookNode, kind: str) -> list[nbformat.NotebookNode]:
    return [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == kind
    ]


def _stdout(nb: nbformat.NotebookNode) -> str:
    return "".join(o.text for o in _outputs(nb, "stream") if o.name == "stdout")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(
    name: str, kernel_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbclient import NotebookClient

    work = tmp_path / "work"
    work.mkdir()
    # The kernel inherits this environment: a small history, temporary folders (the notebooks
    # make their workspaces with tempfile) and, should a notebook forget its own, a workspace
    # and MLflow store that are not the repository's.
    monkeypatch.setenv("SALESML_NOTEBOOK_DEALS", DEALS)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("SALESML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(
        nb, timeout=600, kernel_name=kernel_name, resources={"metadata": {"path": str(work)}}
    )
    client.execute()  # raises CellExecutionError on the first cell that raises

    assert _outputs(nb, "error") == []
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "a cell did not run"
    probe = "".join(o.text for o in code[-1].outputs if o.output_type == "stream")
    assert probe.strip() == sys.prefix, f"the kernel ran {probe.strip()}, not {sys.prefix}"

    stdout = _stdout(nb)
    workspaces = [p for p in tmp_path.iterdir() if p.name.startswith("salesml-")]
    assert len(workspaces) == 1, f"expected one temporary workspace, found {workspaces}"
    assert f"workspace: {workspaces[0]}" in stdout
    if name.startswith("01"):
        report = workspaces[0] / "report.html"
        assert report.stat().st_size > 100_000, "the walkthrough wrote no report"
        assert (workspaces[0] / "scores.csv").exists()
        assert "teams add up to the total: True" in stdout
        rows = _outputs(nb, "execute_result")[0].data["text/plain"]  # the synthetic tables
        assert re.search(rf"^deals\s+{DEALS}$", rows, re.MULTILINE), rows
    else:
        images = [o for o in _outputs(nb, "display_data") if "image/png" in o.data]
        assert len(images) == 4, f"expected 4 charts, got {len(images)}"
        assert f"{int(DEALS):,} deals" in stdout
