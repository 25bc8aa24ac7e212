"""How result objects show in Jupyter: a short HTML block of titled tables, and a concise repr.

Result types (:class:`~hierbayes.Summary`, :class:`~hierbayes.VariancePartition`,
:class:`~hierbayes.Contrast`, :class:`~hierbayes.PopulationAveraged`) keep their numbers in
DataFrames and xarray objects; their ``_repr_html_`` shows the tables (at most
:data:`MAX_ROWS` rows each), never the draws.
"""

from __future__ import annotations

import html

import pandas as pd

__all__ = ["MAX_ROWS", "html_block"]

#: Most rows of one table shown in a notebook (the object keeps them all).
MAX_ROWS = 20


def html_block(title: str, notes: list[str], tables: list[tuple[str, pd.DataFrame]]) -> str:
    """A ``<div>`` with a bold title, notes and titled tables (long tables cut to :data:`MAX_ROWS`)."""
    parts = [f"<div><b>{html.escape(title)}</b>"]
    parts += [f"<br><span>{html.escape(n)}</span>" for n in notes]
    for caption, frame in tables:
        shown = frame.head(MAX_ROWS)
        more = f" (first {MAX_ROWS} of {len(frame)} rows)" if len(frame) > MAX_ROWS else ""
        parts.append(f"<p><i>{html.escape(caption)}{more}</i></p>")
        parts.append(shown.to_html(float_format=lambda v: f"{v:.4g}", border=0))
    parts.append("</div>")
    return "\n".join(parts)
