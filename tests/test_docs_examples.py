"""Every code block of the documentation (``README.md`` and ``docs/**/*.md``) runs, so the docs cannot drift.

Conventions for the pages (also stated in ``docs/contributing.md``):

* ```` ```python ```` blocks of one page run **in order, in one namespace** (a later block may use
  the names of an earlier one; each page starts empty, so it imports what it uses);
* ```` ```toml ```` blocks are model cards: they are parsed with :func:`hierbayes.cards.parse_card`
  and their design is built against the data;
* ```` ```text ```` blocks are printed output, not code;
* any other block (``bash``, ...), and a python or toml block that cannot run here, is preceded by
  an HTML comment ``<!-- not-run: the reason -->`` (invisible on the site); the test reports each
  one as a skip with its reason (``pytest -ra``). A block of another language without a reason
  fails the fast test below.

Small draws: while a page runs, ``hb.fit`` is replaced by a wrapper that overrides ``draws``,
``tune`` and ``chains`` with :data:`TINY`, turns the progress bar off, ignores convergence
warnings (expected with so few draws) and reuses the fit of identical inputs across blocks and
pages; PSIS-LOO's warning about Pareto k, which tiny draws always raise, is ignored too. The
library itself knows nothing of this.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

import hierbayes as hb

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TINY = {"draws": 30, "tune": 20, "chains": 1}  # 30: PSIS-LOO needs 25 draws or more
OUTPUT_LANGUAGES = {"text"}
RUN_LANGUAGES = {"python", "toml"}

_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int
    lang: str
    code: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page``, with the reason of a ``<!-- not-run: ... -->`` just before."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, indent = i, len(m["indent"])
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        code = "\n".join(line[indent:] for line in lines[start + 1 : j])
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        marker = _NOT_RUN.match(prev)
        out.append(Block(page, start + 1, m["lang"] or "", code, marker["reason"] if marker else None))
        i = j + 1
    return out


ALL_BLOCKS = [b for page in PAGES for b in blocks(page)]
NOT_RUN = [b for b in ALL_BLOCKS if b.not_run is not None]
PAGES_WITH_CODE = sorted({b.page for b in ALL_BLOCKS if b.lang in RUN_LANGUAGES and b.not_run is None})


def _key(value: object) -> object:
    """A hashable stand-in for an argument of ``hb.fit`` (data frames by content)."""
    if isinstance(value, pd.DataFrame):
        return ("frame", tuple(value.columns), int(pd.util.hash_pandas_object(value, index=True).sum()))
    return repr(value)


@pytest.fixture(scope="module")
def tiny_fit():
    """A replacement for ``hb.fit``: tiny draws, no progress bar, one fit per distinct input."""
    real = hb.fit
    cache: dict[object, hb.Fit] = {}

    def fit(model, data, **kwargs):
        for name, value in TINY.items():
            kwargs[name] = value
        kwargs["progressbar"] = False
        if isinstance(model, str):  # a formula and the builder it equals share one fit
            spec_keys = ("family", "link", "priors")
            model = hb.parse_formula(model, **{k: kwargs.pop(k) for k in spec_keys if kwargs.get(k) is not None})
        key = (_key(model), _key(data), tuple(sorted((k, _key(v)) for k, v in kwargs.items())))
        if key not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", hb.ConvergenceWarning)
                cache[key] = real(model, data, **kwargs)
        return cache[key]

    return fit


def test_every_block_runs_or_says_why_not():
    unmarked = [
        f"{b.where} (```{b.lang or 'no language'})"
        for b in ALL_BLOCKS
        if b.lang not in RUN_LANGUAGES | OUTPUT_LANGUAGES and b.not_run is None
    ]
    assert not unmarked, (
        "code blocks that are neither run by the tests nor marked: put '<!-- not-run: <why> -->' on the "
        f"line before each, or make it a python/toml block: {unmarked}"
    )
    empty = [b.where for b in NOT_RUN if not b.not_run]
    assert not empty, f"'<!-- not-run: -->' needs a reason: {empty}"


def test_python_blocks_compile():
    for b in ALL_BLOCKS:
        if b.lang == "python":
            compile(b.code, b.where, "exec")


@pytest.mark.parametrize("block", NOT_RUN, ids=lambda b: b.where)
def test_not_run_block(block):
    pytest.skip(f"not run ({block.where}): {block.not_run}")


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page, tiny_fit, monkeypatch, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hierbayes.cards import parse_card

    monkeypatch.setattr(hb, "fit", tiny_fit)
    monkeypatch.chdir(tmp_path)  # examples that write files write here
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        for b in blocks(page):
            if b.not_run is not None or b.lang not in RUN_LANGUAGES:
                continue
            try:
                if b.lang == "python":
                    with warnings.catch_warnings():
                        # PSIS-LOO's Pareto k is unreliable with tiny draws; every other warning stays an error.
                        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
                        exec(compile(b.code, b.where, "exec"), namespace)
                else:
                    card = parse_card(b.code, base=ROOT, name="docs")
                    data = card.load_data()
                    hb.make_design(card.spec, data, dropna=card.dropna)
            except Exception as err:
                pytest.fail(f"the example at {b.where} fails: {type(err).__name__}: {err}")
    finally:
        plt.close("all")
