"""Plots and an HTML report of a run directory (``rlaif report RUN_DIR``)."""

from rlaif.report.figures import write_plots
from rlaif.report.html import write_report
from rlaif.report.run_data import length_drift

__all__ = ["length_drift", "write_plots", "write_report"]
