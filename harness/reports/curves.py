"""Training curves: each metric logged over steps, mean over seeds with a ±1 std band, one line
per configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.reports.headers import metric_header
from harness.reports.labels import axis_label, slug
from harness.reports.loading import FINISHED, Sweep, metric_history
from harness.reports.plots import Plot, legend, line_label, lines_by, plain_ticks, seed_stats
from harness.reports.settings import ReportSettings, metric_spec
from harness.reports.style import colors, figure, save


def curve_metrics(runs: pd.DataFrame, settings: ReportSettings) -> list[str]:
    """The configured curves, else every metric that some finished run logged at a step > 0."""
    if settings.curves is not None:
        return list(settings.curves)
    done = runs[runs["status"] == FINISHED]
    return sorted({name for names in done["curves"] for name in names})


def curve_plot(sweep: Sweep, name: str, settings: ReportSettings, folder: Path) -> Plot | None:
    done = sweep.runs[sweep.runs["status"] == FINISHED]
    history = metric_history(sweep.uri, sorted(done["run_id"]), name)
    if history["step"].nunique() < 2:
        return None
    specs = {metric.name: metric for metric in settings.metrics}
    metric = specs.get(name) or metric_spec(name)
    hue = settings.axes
    with figure() as fig:
        ax = fig.add_subplot()
        lines = lines_by(done, hue, settings)
        for (key, members), color in zip(lines, colors(len(lines)), strict=True):
            points = history[history["run_id"].isin(set(members["run_id"]))]
            if points.empty:
                continue
            stats = seed_stats(points, "step", "value")
            steps, mean, std = (stats[c].to_numpy(dtype=float) for c in ("step", "mean", "std"))
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            ax.plot(steps, mean, color=color, linewidth=1.2,
                    label=line_label(hue, key) if hue else None)
        if "loss" in name and bool(np.all(history["value"] > 0)):
            ax.set_yscale("log")
        plain_ticks(ax)
        ax.set_xlabel(axis_label("step"))
        ax.set_ylabel(metric_header(metric))
        if hue:
            legend(ax, hue, len(lines))
        files = save(fig, folder / f"curve_{slug(name)}")
    return Plot(f"{metric.label} vs training step", f"curve_{slug(name)}", files)


def training_curves(sweep: Sweep, settings: ReportSettings, folder: Path) -> list[Plot]:
    plots = [curve_plot(sweep, name, settings, folder)
             for name in curve_metrics(sweep.runs, settings)]
    return [plot for plot in plots if plot is not None]
