"""Griffe extension for the API reference: hierbayes' docstrings rendered as Markdown.

hierbayes' docstrings are numpy style with reStructuredText markup, as Python tooling reads
them. mkdocstrings renders docstrings as Markdown, so this extension, used only for the docs
build, converts the markup it meets (nothing else changes):

* ``:math:`x``` becomes inline math and ``.. math::`` blocks display math (MathJax, through
  ``pymdownx.arithmatex``); ``.. code-block:: lang`` becomes a fenced code block;
* ``:func:`name``` and the other cross-reference roles become code spans;
* rST "simple tables" (columns under ``=====  =====`` rules) become Markdown tables;
* related parameters documented together (``draws, tune, chains``) get each its own type and
  default from the signature (griffe's numpy parser would give them all the first one's).
"""

from __future__ import annotations

import re
import textwrap
from functools import cached_property
from typing import Any

import griffe

_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_XREF_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|obj|exc|const|ref):`~?([^`]+)`")
_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. (?P<kind>math|code-block)::\s*(?P<arg>\S*)\s*$")
_RULE = re.compile(r"^(?P<indent>\s*)=+(?:\s+=+)+\s*$")


def _width(line: str) -> int:
    return len(line) - len(line.lstrip())


def _directive(lines: list[str], i: int, m: re.Match[str]) -> tuple[list[str], int]:
    indent = m["indent"]
    i += 1
    block: list[str] = []
    while i < len(lines) and (not lines[i].strip() or _width(lines[i]) > len(indent)):
        block.append(lines[i])
        i += 1
    trailing = []
    while block and not block[-1].strip():
        trailing.append(block.pop())
    body = textwrap.dedent("\n".join(block)).strip("\n").splitlines()
    fence = ["$$", "$$"] if m["kind"] == "math" else ["```" + m["arg"], "```"]
    out = ["", indent + fence[0], *(indent + line for line in body), indent + fence[1], *trailing]
    return out, i


def _table(lines: list[str], i: int, m: re.Match[str]) -> tuple[list[str], int] | None:
    """Convert an rST simple table starting at rule line ``i`` (top rule, header, rule, rows, rule)."""
    rule = lines[i]
    spans = [(s.start(), s.end()) for s in re.finditer(r"=+", rule)]
    if i + 2 >= len(lines) or not _RULE.match(lines[i + 2]):
        return None
    end = next((k for k in range(i + 3, len(lines)) if _RULE.match(lines[k])), None)
    if end is None:
        return None

    def cells(line: str) -> list[str]:
        bounds = [*(s for s, _ in spans[1:]), None]
        return [line[s:e].strip().replace("|", "\\|") for (s, _), e in zip(spans, bounds, strict=True)]

    indent = m["indent"]
    rows = [cells(lines[i + 1]), ["---"] * len(spans)]
    rows += [cells(line) for line in lines[i + 3 : end] if line.strip()]
    out = ["", *(indent + "| " + " | ".join(r) + " |" for r in rows), ""]
    return out, end + 1


def to_markdown(text: str) -> str:
    """Convert the reStructuredText markup of a docstring to Markdown (see the module docstring)."""
    text = _MATH_ROLE.sub(lambda m: f"${m[1].strip()}$", text)
    text = _XREF_ROLE.sub(lambda m: f"`{m[1]}`", text)
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        if m := _DIRECTIVE.match(lines[i]):
            block, i = _directive(lines, i, m)
            out.extend(block)
        elif (m := _RULE.match(lines[i])) and (table := _table(lines, i, m)) is not None:
            block, i = table
            out.extend(block)
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out)


class _MarkdownDocstring(griffe.Docstring):
    @cached_property
    def parsed(self) -> list[griffe.DocstringSection]:
        sections = self.parse()
        try:
            signature = {p.name: p for p in self.parent.parameters}  # type: ignore[union-attr]
        except Exception:  # an object without a signature
            return sections
        for section in sections:
            if section.kind is griffe.DocstringSectionKind.parameters:
                for param in section.value:
                    if param.name in signature:
                        param.annotation = signature[param.name].annotation
                        param.value = signature[param.name].default
        return sections


def _objects(obj: griffe.Object) -> list[griffe.Object]:
    out = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            out.extend(_objects(member))  # type: ignore[arg-type]
    return out


class MarkdownDocstrings(griffe.Extension):
    """Convert hierbayes' docstrings for mkdocstrings (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite every docstring of the package and make its parsing signature-aware."""
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = to_markdown(obj.docstring.value)
                obj.docstring.__class__ = _MarkdownDocstring
