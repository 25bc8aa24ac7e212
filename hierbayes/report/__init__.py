"""The report: one self-contained HTML page per fit (:func:`report`, :func:`render_report`)."""

from hierbayes.report.page import EFFECT_DRAWS, PPC_DRAWS, SHRINKAGE_LEVELS, render_report, report

__all__ = ["EFFECT_DRAWS", "PPC_DRAWS", "SHRINKAGE_LEVELS", "render_report", "report"]
