"""Write a whole report of one sweep: tables (Markdown, LaTeX, CSV), plots and index.md."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from harness.reports.csvfile import runs_csv, table_csv
from harness.reports.curves import training_curves
from harness.reports.index import index_markdown
from harness.reports.latex import latex_table
from harness.reports.layout import Table, build_table
from harness.reports.loading import Sweep
from harness.reports.markdown import markdown_table
from harness.reports.plots import Plot, axis_plots
from harness.reports.settings import ReportSettings, resolve

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
    table = build_table(sweep.runs, settings)
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
