"""A report table, format-neutral: ordered rows and columns, formatted cells, ranks, notes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import pandas as pd

from harness.reports.aggregate import (
    Cell,
    Key,
    describe_failures,
    group_runs,
    make_cell,
    ordered_keys,
)
from harness.reports.labels import decimals_for, format_value, short_names
from harness.reports.settings import MetricSpec, ReportSettings

RANKED = ("value", "partial")


@dataclass(frozen=True)
class Column:
    group: Key  # values of the column axes; () without column axes
    metric: MetricSpec
    decimals: int


@dataclass(frozen=True)
class Entry:
    """One cell as every format shows it."""

    cell: Cell
    mean: str = ""
    std: str = ""  # empty below two values
    n: int | None = None  # set where it differs from the table's usual number of seeds
    rank: int = 0  # 1 best, 2 second best, 0 neither
    note: str = ""  # footnote marker

    @property
    def kind(self) -> str:
        return self.cell.kind


@dataclass(frozen=True)
class Table:
    row_axes: tuple[str, ...]
    column_axes: tuple[str, ...]
    labels: dict[str, str]  # axis key -> header label
    rows: list[Key]
    groups: list[Key]
    columns: list[Column]
    entries: list[list[Entry]]  # [row][column]
    notes: list[tuple[str, str]] = field(default_factory=list)  # (marker, text)
    seeds: int = 0  # the usual number of values per cell

    def group_label(self, group: Key) -> str:
        return ", ".join(f"{self.labels[axis]}={format_value(value)}"
                         for axis, value in zip(self.column_axes, group, strict=True))


def format_number(value: float, decimals: int) -> str:
    if not math.isfinite(value):
        return ""
    text = f"{value:.{decimals}f}"
    return text.lstrip("-") if float(text) == 0 else text


def _rank(entries: list[Entry], better: str | None, decimals: int) -> list[int]:
    """1 for the best displayed value, 2 for the second (ties share), else 0."""
    shown = [round(e.cell.mean, decimals) if e.kind in RANKED else None for e in entries]
    candidates = sorted({v for v in shown if v is not None}, reverse=better == "higher")
    if better is None or len(candidates) < 2:  # nothing to tell apart
        return [0] * len(entries)
    places = {value: place for place, value in enumerate(candidates[:2], start=1)}
    return [places.get(v, 0) if v is not None else 0 for v in shown]


def _note_text(cell: Cell) -> str:
    if cell.kind == "failed":
        return f"all {cell.runs} runs failed: {describe_failures(cell.failures)}"
    if cell.kind == "unavailable":
        return "unavailable: " + "; ".join(cell.unavailable)
    if cell.kind != "partial":
        return ""
    parts = [describe_failures(cell.failures)] if cell.failures else []
    lacking = cell.finished - cell.n
    if lacking:
        parts.append(f"{lacking} finished run{'s' if lacking > 1 else ''} did not record it"
                     + (f" ({'; '.join(cell.unavailable)})" if cell.unavailable else ""))
    return f"mean over {cell.n} of {cell.runs} runs; " + "; ".join(parts)


def _decimals(metric: MetricSpec, cells: list[Cell]) -> int:
    if metric.decimals is not None:
        return metric.decimals
    return decimals_for([cell.mean for cell in cells if cell.kind in RANKED])


def _marker(number: int) -> str:
    return chr(ord("a") + number) if number < 26 else str(number + 1)


def build_table(runs: pd.DataFrame, settings: ReportSettings) -> Table:
    """Rows = configurations of the row axes, columns = column-axis values x metrics."""
    row_axes, column_axes = settings.rows, settings.columns
    groups = group_runs(runs, row_axes + column_axes)
    row_keys = ordered_keys([key[:len(row_axes)] for key in groups],
                            [settings.value_order(axis) for axis in row_axes])
    group_keys = ordered_keys([key[len(row_axes):] for key in groups],
                              [settings.value_order(axis) for axis in column_axes])
    pairs = [(group, metric) for group in group_keys for metric in settings.metrics]
    empty = runs.iloc[0:0]
    cells = [[make_cell(groups.get(row + group, empty), metric.name) for group, metric in pairs]
             for row in row_keys]
    decimals = {metric.name: _decimals(metric, [line[index] for line in cells
                                                for index, (_, m) in enumerate(pairs)
                                                if m.name == metric.name])
                for metric in settings.metrics}
    columns = [Column(group, metric, decimals[metric.name]) for group, metric in pairs]
    seeds = max((cell.n for line in cells for cell in line), default=0)
    entries = [[Entry(cell, format_number(cell.mean, column.decimals),
                      format_number(cell.std, column.decimals),
                      cell.n if cell.kind in RANKED and cell.n != seeds else None)
                for cell, column in zip(line, columns, strict=True)] for line in cells]
    for index, column in enumerate(columns):
        ranks = _rank([line[index] for line in entries], column.metric.better, column.decimals)
        for line, rank in zip(entries, ranks, strict=True):
            line[index] = replace(line[index], rank=rank)
    notes: dict[str, str] = {}  # text -> marker, in reading order
    for line in entries:
        for index, entry in enumerate(line):
            text = _note_text(entry.cell)
            if text:
                line[index] = replace(entry, note=notes.setdefault(text, _marker(len(notes))))
    return Table(row_axes, column_axes, short_names(list(row_axes + column_axes)), row_keys,
                 group_keys, columns, entries, [(m, t) for t, m in notes.items()], seeds)
