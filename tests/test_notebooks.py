"""The example notebooks: built from their sources, committed with their outputs, and executable.

``make notebooks`` executes them with the real draws of each analysis and saves the outputs
(``examples/_build_notebooks.py --execute``); the fast tests check that the committed notebooks
match their sources and carry the outputs of a complete run. The slow tests execute every
notebook again with tiny draws (so that they never rot), without writing: a cell that sets
``DRAWS = 50; TUNE = 50; CHAINS = 1`` is injected right after the notebook's cell tagged
``parameters`` (the papermill convention), before execution with nbclient.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
TINY = "DRAWS = 50\nTUNE = 50\nCHAINS = 1"


def _builder():
    spec = importlib.util.spec_from_file_location("_build_notebooks", EXAMPLES / "_build_notebooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def with_tiny_draws(nb):
    """Return a copy of ``nb`` with a cell overriding the parameters injected after the ``parameters`` cell."""
    nb = nbformat.from_dict(nb)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    cell = nbformat.v4.new_code_cell(TINY)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(tagged[0] + 1, cell)
    return nb


def test_every_source_has_a_notebook():
    builder = _builder()
    assert sorted(p.stem for p in NOTEBOOKS) == sorted(builder.NOTEBOOKS)
    assert sorted(p.stem for p in (EXAMPLES / "src").glob("*.py")) == sorted(builder.NOTEBOOKS)


def test_notebooks_are_up_to_date_with_their_sources():
    builder = _builder()
    stale = [n for n in builder.NOTEBOOKS if builder.source_of(EXAMPLES / f"{n}.ipynb") != builder.render(n)]
    assert not stale, f"rebuild with `python examples/_build_notebooks.py`, then `make notebooks`: {stale}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_with_outputs(path):
    nb = _read(path)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name} is not the output of one complete run: run `make notebooks` (execution counts {counts})"
    )
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} was saved with errors: {[e.evalue for e in errors]}"
    assert any(c.outputs for c in code[1:]), f"{path.name} has no outputs: run `make notebooks`"
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in code), "saved from a test run"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    namespace: dict[str, int] = {}
    exec(params[0].source, namespace)
    # The real analysis: at least 1000 draws after 1000 tuning steps, 4 chains.
    assert namespace["DRAWS"] >= 1000 and namespace["TUNE"] >= 1000 and namespace["CHAINS"] == 4
    # Parameters come first: no code cell before them may fit anything.
    assert code.index(params[0]) == 0


def test_injection_overrides_the_parameters():
    nb = with_tiny_draws(_read(NOTEBOOKS[0]))
    namespace: dict[str, int] = {}
    for cell in nb.cells[:5]:
        if cell.cell_type == "code" and set(cell.metadata.get("tags", [])) & {"parameters", "injected-parameters"}:
            exec(cell.source, namespace)
    assert (namespace["DRAWS"], namespace["TUNE"], namespace["CHAINS"]) == (50, 50, 1)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLES.parent))  # the kernel imports this checkout's hierbayes
    nb = with_tiny_draws(_builder().without_outputs(_read(path)))
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
