"""Reports of a sweep: MLflow runs -> pandas -> paper-style tables, plots and index.md.

Public API (imported lazily, so that `add_commands` does not load pandas or matplotlib):
`add_commands`, `load_sweep`, `Sweep`, `ReportSettings`, `from_experiment`, `resolve`,
`build_table`, `write_report`, `compare_sweeps`, `power_law_fit`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from harness.reports.command import add_commands

_API = {
    "load_sweep": "loading", "Sweep": "loading", "ReportError": "loading",
    "ReportSettings": "settings", "from_experiment": "settings", "resolve": "settings",
    "build_table": "layout", "Table": "layout", "write_report": "report", "Report": "report",
    "compare_sweeps": "compare", "power_law_fit": "fit",
}

__all__ = ["add_commands", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(f"harness.reports.{_API[name]}"), name)
    raise AttributeError(f"module 'harness.reports' has no attribute {name!r}")
