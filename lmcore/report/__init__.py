"""The run report: a self-contained HTML page built from every stage's outputs."""

from lmcore.report.page import build, render

__all__ = ["build", "render"]
