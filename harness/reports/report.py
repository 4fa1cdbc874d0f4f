"""What `harness report` writes: the report folder of one sweep (tables, plots, index.md), or
a side-by-side Markdown comparison of two sweeps."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.reports.cells import Cell, first_line, make_cell
from harness.reports.loading import FINISHED, Sweep
from harness.reports.plots import Plot, axis_plots, training_curves
from harness.reports.settings import (
    MetricSpec,
    ReportSettings,
    is_bookkeeping,
    metric_spec,
    resolve,
)
from harness.reports.tables import (
    MARKDOWN,
    Table,
    build_table,
    format_number,
    format_value,
    group_runs,
    latex_table,
    markdown_escape,
    markdown_grid,
    markdown_row,
    markdown_table,
    metric_decimals,
    metric_header,
    ordered_keys,
    runs_csv,
    short_names,
    table_csv,
)

log = logging.getLogger(__name__)
PLOTS = "plots"


@dataclass(frozen=True)
class Report:
    out: Path
    files: list[Path]  # every file written, sorted
    table: Table
    plots: list[Plot]  # metric against an axis
    curves: list[Plot]  # metric against training step
    settings: ReportSettings  # resolved against the runs


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="\n")
    return path


def _warn_pooled(sweep: Sweep, settings: ReportSettings) -> None:
    swept = {key for swept in sweep.runs.get("swept", []) for key in swept} - {"seed"}
    pooled = sorted(swept - set(settings.axes))
    if pooled:
        log.warning("swept keys %s are not axes of the report table: each cell pools their "
                    "values with the seeds", ", ".join(pooled))


def write_report(sweep: Sweep, settings: ReportSettings, out: Path, description: str = "",
                 command: str = "") -> Report:
    """Render the report of `sweep` into `out`; the same runs give the same bytes."""
    settings = resolve(settings, sweep.runs)
    _warn_pooled(sweep, settings)
    out.mkdir(parents=True, exist_ok=True)
    table = build_table(sweep.runs, settings, sweep.references)
    table_md = markdown_table(table, sweep.experiment)
    files = [_write(out / "table.md", table_md),
             _write(out / "table.tex", latex_table(table, sweep.experiment, sweep.sweep_id)),
             _write(out / "table.csv", table_csv(table)),
             _write(out / "runs.csv", runs_csv(sweep.runs, settings))]
    plots = axis_plots(sweep.runs, settings, out / PLOTS)
    curves = training_curves(sweep, settings, out / PLOTS)
    drawn = {path for plot in plots + curves for path in plot.files}
    for stale in sorted((out / PLOTS).glob("*")) if (out / PLOTS).is_dir() else []:
        if stale.suffix in (".png", ".pdf") and stale not in drawn:
            stale.unlink()  # left by an earlier render of a different sweep
    command = command or f"harness report EXPERIMENT.yaml --sweep-id {sweep.sweep_id}"
    index = index_markdown(sweep, out, table_md, plots, curves, description, command)
    files += [*drawn, _write(out / "index.md", index)]
    return Report(out, sorted(files), table, plots, curves, settings)


def _facts(sweep: Sweep, command: str) -> list[str]:
    statuses = sweep.runs["status"].value_counts().sort_index()
    counts = ", ".join(f"{count} {status.lower()}" for status, count in statuses.items())
    rows = [("sweep", f"`{sweep.sweep_id}` ({sweep.status.lower()})"),
            ("date", f"{sweep.date} (start of the sweep)"),
            ("git commit", ", ".join(f"`{commit}`" for commit in sweep.commits)),
            ("trial runs", f"{len(sweep.runs)}: {counts}" if len(sweep.runs) else "none")]
    if sweep.tags.get("profiles"):
        rows.append(("profiles", sweep.tags["profiles"]))
    if sweep.tags.get("overrides"):
        rows.append(("overrides", f"`{sweep.tags['overrides']}`"))
    rows.append(("regenerate", f"`{command}`"))
    return ["| | |", "|:--|:--|", *(f"| {key} | {markdown_escape(value)} |" for key, value in rows)]


def _plot_section(plot: Plot, out: Path) -> list[str]:
    png, pdf = (path.relative_to(out).as_posix() for path in plot.files)
    lines = [f"### {plot.title}", "", f"![{plot.title}]({png})", ""]
    if plot.fits:
        fits = ", ".join(f"{fit.slope:.4f}" + (f" ({fit.line})" if fit.line else "")
                         for fit in plot.fits)
        lines += [f"Fitted slope (least squares on log-log axes): {fits}.", ""]
    return [*lines, f"[PDF]({pdf})", ""]


def _failures(sweep: Sweep) -> list[str]:
    failed = sweep.runs[sweep.runs["status"] != FINISHED]
    if failed.empty:
        return []
    lines = ["## Runs that did not finish", "", "| trial | seed | status | error |",
             "|:--|:--|:--|:--|"]
    lines += [f"| {run['trial_id']} | {run['seed']} | {run['status']} | "
              f"{markdown_escape(first_line(str(run['error'] or ''), 300))} |"
              for _, run in failed.iterrows()]
    return [*lines, "", "The traceback is in each run's `traceback.txt` artifact in MLflow.", ""]


def index_markdown(sweep: Sweep, out: Path, table_markdown: str, plots: list[Plot],
                   curves: list[Plot], description: str, command: str) -> str:
    lines = [f"# {sweep.experiment}", ""]
    lines += [description.strip(), ""] if description.strip() else []
    lines += [*_facts(sweep, command), "", "## Results", "", table_markdown.rstrip(), "",
              "Also as [LaTeX](table.tex) (booktabs) and [CSV](table.csv) (raw mean, std, n); "
              "every trial run in [runs.csv](runs.csv).", ""]
    for heading, figures in (("Plots", plots), ("Training curves", curves)):
        if figures:
            lines += [f"## {heading}", ""]
            for plot in figures:
                lines += _plot_section(plot, out)
    lines += _failures(sweep)
    return "\n".join(lines).rstrip() + "\n"


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
        return MARKDOWN.symbols["failed"]
    return format_number(cell.mean, decimals) or MARKDOWN.symbols["missing"]


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
    keys = ordered_keys(list(groups_a) + list(groups_b), axes, settings)
    names = short_names(list(axes))
    header = [*(names[axis] for axis in axes), "metric", "A", "B", "B − A", "change", "better"]
    rows = []
    empty = a.runs.iloc[0:0]
    for metric in metrics:
        cells = [(make_cell(groups_a.get(key, empty), metric.name),
                  make_cell(groups_b.get(key, empty), metric.name)) for key in keys]
        decimals = metric_decimals(metric, [cell for pair in cells for cell in pair])
        for key, (old, new) in zip(keys, cells, strict=True):
            delta = new.mean - old.mean
            relative = delta / abs(old.mean) * 100 if old.mean else math.nan
            rows.append([*(format_value(value) for value in key), metric_header(metric),
                         _value(old, decimals), _value(new, decimals),
                         f"{delta:+.{decimals}f}" if math.isfinite(delta) else "",
                         f"{relative:+.1f}%" if math.isfinite(relative) else "",
                         _better(metric, old.mean, new.mean)])
    lines, widths = markdown_grid([header, *rows])
    text = [f"{name}: sweep {sweep.sweep_id} of {sweep.experiment}, {sweep.date}, commit "
            f"{', '.join(sweep.commits)}" for name, sweep in (("A", a), ("B", b))]
    text += ["", markdown_row(lines[0], widths),
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    text += [markdown_row(line, widths) for line in lines[1:]]
    if not metrics:
        text.append("(the two sweeps share no metric recorded by a finished run)")
    return "\n".join(text) + "\n"
