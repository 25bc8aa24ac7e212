"""Build the example notebooks (``examples/*.ipynb``) from their sources in ``examples/src/*.py``.

The sources are plain Python in the "percent" format that jupytext and VS Code understand, so
they are easy to edit, diff and lint, and can be run as scripts::

    # %% [markdown]
    # # A title
    # Prose, with $\\LaTeX$ math.

    # %% tags=["parameters"]
    DRAWS = 1000

    # %%
    fit = hb.fit(...)

A cell starts at a line ``# %%``; ``[markdown]`` makes it a Markdown cell whose lines lose their
leading ``# ``; ``tags=[...]`` sets the cell's tags (the tests rely on the tag ``parameters``).
In a code cell, a commented IPython magic (``# %matplotlib inline``, as jupytext writes it) becomes
the magic, so the source still runs as a script.

The notebooks are committed **with their outputs**: ``--execute`` (``make notebooks``) runs each
one with the draws of its ``parameters`` cell (the real analysis) in a fresh kernel, from the
examples folder, and saves the outputs in place. Every fit has a seed, so the tables are
reproducible with the same libraries; timings are not recorded, and sampler progress bars and
library log lines are dropped from the saved outputs (warnings of hierbayes are kept). Rewriting
a notebook whose source did not change keeps its outputs; a changed source gives a notebook
without outputs until it is executed again.

Usage::

    python examples/_build_notebooks.py                  # (re)write the notebooks whose source changed
    python examples/_build_notebooks.py --check          # exit 1 if a notebook is out of date
    python examples/_build_notebooks.py --execute [NAME ...]  # execute and save with outputs (make notebooks)
"""

from __future__ import annotations

import ast
import copy
import re
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"

#: The notebooks, in reading order.
NOTEBOOKS = ("eight_schools", "achievement", "guatemalan", "sleepstudy", "seedlings", "crossed", "counts")

_MARKER = re.compile(r"^# %%(?P<md> \[markdown\])?(?:\s+tags=(?P<tags>\[.*\]))?\s*$")
_MAGIC = re.compile(r"^# (?P<magic>%{1,2}[A-Za-z]\w*.*)$")


def _strip(lines: list[str]) -> str:
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def _markdown(lines: list[str], where: str) -> str:
    out = []
    for line in lines:
        if line == "#":
            out.append("")
        elif line.startswith("# "):
            out.append(line[2:])
        elif not line.strip():
            out.append("")
        else:
            raise ValueError(f"{where}: a Markdown cell's lines must start with '# '; found {line!r}.")
    return _strip(out)


def parse(text: str, where: str = "<source>") -> nbformat.NotebookNode:
    """Turn a percent-format source into a notebook (no outputs)."""
    cells = []
    kind, tags, lines = None, [], []

    def flush() -> None:
        if kind is None:
            if _strip(list(lines)):
                raise ValueError(f"{where}: text before the first '# %%' marker.")
            return
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(_markdown(lines, where))
        else:
            code = [m["magic"] if (m := _MAGIC.match(line)) else line for line in lines]
            cell = nbformat.v4.new_code_cell(_strip(code))
        if tags:
            cell.metadata["tags"] = tags
        cells.append(cell)

    for line in text.splitlines():
        m = _MARKER.match(line)
        if m:
            flush()
            kind = "markdown" if m["md"] else "code"
            tags = list(ast.literal_eval(m["tags"])) if m["tags"] else []
            lines = []
        else:
            lines.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    _notebook_metadata(nb)
    # Stable cell ids, so that rebuilding an unchanged source gives the same file.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    """The notebook ``name`` as the text of its ``.ipynb`` file."""
    path = SRC / f"{name}.py"
    return nbformat.writes(parse(path.read_text(), str(path))) + "\n"


def _notebook_metadata(nb: nbformat.NotebookNode) -> None:
    """The notebook-level metadata :func:`parse` writes (a kernel fills in more: version numbers)."""
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}


def without_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` with no outputs, execution counts or execution metadata (its source alone)."""
    nb = copy.deepcopy(nb)
    _notebook_metadata(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
    return nb


def source_of(path: Path) -> str:
    """The text that :func:`render` gives for the notebook at ``path``, outputs removed."""
    return nbformat.writes(without_outputs(nbformat.read(path, as_version=4))) + "\n"


#: What is kept of stderr in saved outputs: hierbayes's warnings (whole) and its one-line notes; the
#: rest (sampler progress, library log lines, third-party warnings about the environment) is dropped.
_HB_WARNING = re.compile(r"^\S+:\d+: (?=(ConvergenceWarning|NestingWarning|DataWarning): )")
_HB_NOTE = re.compile(r"^hierbayes: ")


def _stderr(text: str) -> str:
    """hierbayes's warnings (header without the kernel's temporary file name, and their ``- `` items) and notes."""
    kept, in_warning = [], False
    for line in text.splitlines(keepends=True):
        if m := _HB_WARNING.match(line):
            in_warning = True
            kept.append(line[m.end() :])
        elif in_warning and line.startswith("- "):
            kept.append(line)
        else:
            in_warning = False
            if _HB_NOTE.match(line):
                kept.append(line)
    return "".join(kept)


def _tidy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop the outputs that differ from run to run or machine to machine (see the module docstring)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.outputs:
            if out.output_type == "stream" and out.name == "stderr":
                out.text = _stderr(out.text)
                if not out.text:
                    continue
            elif out.output_type == "display_data" and not ({"image/png", "image/svg+xml"} & set(out.data)):
                text = str(out.data.get("text/plain", ""))
                if not text.strip() or "rich" in text:
                    continue  # the sampler's progress bar (rich's live display) and rich's notes about it
            kept.append(out)
        cell.outputs = kept
        cell.metadata.pop("execution", None)
    _notebook_metadata(nb)  # no Python version numbers: the same file on every machine
    return nb


def execute(name: str, *, timeout: int = 3600) -> nbformat.NotebookNode:
    """Run the notebook ``name`` with its own parameters in a fresh kernel; return it with its outputs."""
    import os

    import nbclient

    # The kernel imports hierbayes from this checkout (not from wherever the environment points).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))
    nb = parse((SRC / f"{name}.py").read_text(), str(SRC / f"{name}.py"))
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(HERE)}}
    )
    client.execute()
    return _tidy(nb)


def main(argv: list[str]) -> int:
    """Write the notebooks, or with ``--check`` report those out of date, or ``--execute`` them."""
    if "--execute" in argv:
        names = [a for a in argv if not a.startswith("--")] or list(NOTEBOOKS)
        for name in names:
            start = time.perf_counter()
            nb = execute(name)
            (HERE / f"{name}.ipynb").write_text(nbformat.writes(nb) + "\n")
            print(f"executed examples/{name}.ipynb in {time.perf_counter() - start:.0f} s", flush=True)
        return 0
    check = "--check" in argv
    stale = []
    for name in NOTEBOOKS:
        target = HERE / f"{name}.ipynb"
        text = render(name)
        if target.exists() and source_of(target) == text:
            continue
        if check:
            stale.append(target.name)
        else:
            target.write_text(text)
            print(f"wrote {target.relative_to(HERE.parent)}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python examples/_build_notebooks.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
