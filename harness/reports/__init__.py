"""Reports of a sweep: MLflow runs -> pandas -> paper-style tables, plots and index.md.

loading (MLflow -> pandas), settings (what to show), tables, plots, report (the folder and the
comparison of two sweeps), command (`harness report`).
"""

from harness.reports.command import add_commands

__all__ = ["add_commands"]
