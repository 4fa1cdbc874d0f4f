"""Side by side: the metrics two sweeps share, mean per configuration, and the change."""

from __future__ import annotations

import math

import pandas as pd

from harness.reports.aggregate import Cell, group_runs, make_cell, ordered_keys
from harness.reports.headers import markdown_escape, metric_header
from harness.reports.labels import decimals_for, format_value, is_bookkeeping, short_names
from harness.reports.layout import format_number
from harness.reports.loading import FINISHED, Sweep
from harness.reports.settings import MetricSpec, ReportSettings, metric_spec, resolve


def shared_metrics(a: pd.DataFrame, b: pd.DataFrame, settings: ReportSettings
                   ) -> list[MetricSpec]:
    """Metrics recorded by finished runs of both sweeps: the report's first, then the rest."""
    def recorded(runs: pd.DataFrame) -> set[str]:
        done = runs[runs["status"] == FINISHED]
        return {c.removeprefix("metrics.") for c in done.columns
                if c.startswith("metrics.") and done[c].notna().any()}

    both = recorded(a) & recorded(b)
    named = [metric for metric in settings.metrics if metric.name in both]
    rest = sorted(both - {metric.name for metric in named})
    return named + [metric_spec(name) for name in rest if not is_bookkeeping(name)]


def _value(cell: Cell, decimals: int) -> str:
    if cell.kind == "failed":
        return "✗"
    return format_number(cell.mean, decimals) or "–"


def _better(metric: MetricSpec, old: float, new: float) -> str:
    if metric.better is None or not (math.isfinite(old) and math.isfinite(new)):
        return ""
    if old == new:
        return "="
    return "B" if (new < old) == (metric.better == "lower") else "A"


def compare_sweeps(a: Sweep, b: Sweep, settings: ReportSettings) -> str:
    """A Markdown table: configuration, metric, mean in A, mean in B, B - A, relative change."""
    settings = resolve(settings, a.runs)
    axes = settings.axes
    metrics = shared_metrics(a.runs, b.runs, settings)
    groups_a, groups_b = group_runs(a.runs, axes), group_runs(b.runs, axes)
    keys = ordered_keys(list(groups_a) + list(groups_b),
                        [settings.value_order(axis) for axis in axes])
    names = short_names(list(axes))
    header = [*(names[axis] for axis in axes), "metric", "A", "B", "B − A", "change", "better"]
    rows = []
    empty = a.runs.iloc[0:0]
    for metric in metrics:
        cells = [(make_cell(groups_a.get(key, empty), metric.name),
                  make_cell(groups_b.get(key, empty), metric.name)) for key in keys]
        decimals = metric.decimals if metric.decimals is not None else decimals_for(
            [cell.mean for pair in cells for cell in pair])
        for key, (old, new) in zip(keys, cells, strict=True):
            delta = new.mean - old.mean
            relative = delta / abs(old.mean) * 100 if old.mean else math.nan
            rows.append([*(format_value(value) for value in key), metric_header(metric),
                         _value(old, decimals), _value(new, decimals),
                         f"{delta:+.{decimals}f}" if math.isfinite(delta) else "",
                         f"{relative:+.1f}%" if math.isfinite(relative) else "",
                         _better(metric, old.mean, new.mean)])
    lines = [[markdown_escape(text) for text in line] for line in [header, *rows]]
    widths = [max(3, *(len(line[i]) for line in lines)) for i in range(len(header))]
    text = [f"A: sweep {a.sweep_id} of {a.experiment}, {a.date}, commit "
            f"{', '.join(a.commits)}",
            f"B: sweep {b.sweep_id} of {b.experiment}, {b.date}, commit "
            f"{', '.join(b.commits)}", ""]
    for number, line in enumerate(lines):
        text.append("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))
                    + " |")
        if number == 0:
            text.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    if not metrics:
        text.append("(the two sweeps share no metric recorded by a finished run)")
    return "\n".join(text) + "\n"
