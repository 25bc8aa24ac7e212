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
The notebooks are written without outputs.

Usage::

    python examples/_build_notebooks.py          # (re)write every notebook
    python examples/_build_notebooks.py --check  # exit 1 if a notebook is out of date
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"

#: The notebooks, in reading order.
NOTEBOOKS = ("eight_schools", "achievement", "guatemalan", "sleepstudy", "seedlings")

_MARKER = re.compile(r"^# %%(?P<md> \[markdown\])?(?:\s+tags=(?P<tags>\[.*\]))?\s*$")


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
            cell = nbformat.v4.new_code_cell(_strip(list(lines)))
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
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    # Stable cell ids, so that rebuilding an unchanged source gives the same file.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    """The notebook ``name`` as the text of its ``.ipynb`` file."""
    path = SRC / f"{name}.py"
    return nbformat.writes(parse(path.read_text(), str(path))) + "\n"


def main(argv: list[str]) -> int:
    """Write the notebooks, or with ``--check`` report those out of date."""
    check = "--check" in argv
    stale = []
    for name in NOTEBOOKS:
        target = HERE / f"{name}.ipynb"
        text = render(name)
        if target.exists() and target.read_text() == text:
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
