"""CSV outputs: the report table with raw mean/std/n columns, and every trial run."""

from __future__ import annotations

import csv
import io
from typing import Any

import pandas as pd

from harness.reports.aggregate import plain
from harness.reports.layout import Table
from harness.reports.settings import ReportSettings


def _raw(value: Any) -> str:
    """Full precision (repr) for floats, empty for NaN and None."""
    value = plain(value)
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _write(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_raw(value) for value in row] for row in rows])
    return buffer.getvalue()


def table_csv(table: Table) -> str:
    """One line per row x column group: axis values, run counts, then mean, std, n per metric."""
    metrics = list(dict.fromkeys(column.metric.name for column in table.columns))
    header = [*table.row_axes, *table.column_axes, "runs", "finished"]
    header += [f"{name} {stat}" for name in metrics for stat in ("mean", "std", "n")]
    rows = []
    width = len(metrics)
    for key, line in zip(table.rows, table.entries, strict=True):
        for number, group in enumerate(table.groups):
            cells = [entry.cell for entry in line[number * width:(number + 1) * width]]
            stats = [value for cell in cells for value in (cell.mean, cell.std, cell.n)]
            rows.append([*key, *group, cells[0].runs if cells else 0,
                         cells[0].finished if cells else 0, *stats])
    return _write(header, rows)


def runs_csv(runs: pd.DataFrame, settings: ReportSettings) -> str:
    """Every trial run of the sweep: ids, status, seed, the table's axes, all metrics, error."""
    metrics = sorted(c for c in runs.columns if c.startswith("metrics."))
    axes = [f"params.{axis}" for axis in settings.axes if f"params.{axis}" in runs]
    columns = ["trial_id", "run_id", "status", "seed", *axes, *metrics, "error"]
    header = [column.removeprefix("params.").removeprefix("metrics.") for column in columns]
    rows = [[run.get(column) for column in columns] for _, run in runs.iterrows()]
    return _write(header, rows)
