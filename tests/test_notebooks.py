"""The example notebooks: built from their sources, committed without outputs, and executable.

The slow tests execute every notebook with tiny draws (so that they never rot): a cell that sets
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
    stale = [name for name in builder.NOTEBOOKS if (EXAMPLES / f"{name}.ipynb").read_text() != builder.render(name)]
    assert not stale, f"rebuild with `python examples/_build_notebooks.py`: {stale}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path):
    nb = _read(path)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    namespace: dict[str, int] = {}
    exec(params[0].source, namespace)
    assert (namespace["DRAWS"], namespace["TUNE"], namespace["CHAINS"]) == (1000, 1000, 4)
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
    nb = with_tiny_draws(_read(path))
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
