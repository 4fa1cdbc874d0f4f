"""Metric against a numeric axis (K, DDIM steps, p, ...): one line per configuration of the
other axes, mean over seeds with a ±1 std band, and on log-log axes the fitted power law."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.ticker import FuncFormatter

from harness.reports.aggregate import Key, group_runs, ordered_keys
from harness.reports.fit import power_law_fit
from harness.reports.headers import metric_header
from harness.reports.labels import axis_label, format_value, short_names, slug
from harness.reports.loading import FINISHED
from harness.reports.settings import MetricSpec, PlotSpec, ReportSettings, metric_spec
from harness.reports.style import colors, figure, save


@dataclass(frozen=True)
class Fit:
    line: str  # legend label of the configuration ('' for a single line)
    slope: float
    intercept: float


@dataclass(frozen=True)
class Plot:
    title: str
    stem: str  # file stem under the plots folder
    files: list[Path] = field(default_factory=list)
    fits: list[Fit] = field(default_factory=list)


def seed_stats(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Columns x, mean, std (ddof 1; 0 for one seed), n, per distinct x, sorted by x."""
    grouped = frame.groupby(x, sort=True)[y]
    stats = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.size()})
    return stats.fillna({"std": 0.0}).reset_index()


def lines_by(runs: pd.DataFrame, hue: tuple[str, ...], settings: ReportSettings
           ) -> list[tuple[Key, pd.DataFrame]]:
    groups = group_runs(runs, hue)
    order = ordered_keys(list(groups), [settings.value_order(axis) for axis in hue])
    return [(key, groups[key]) for key in order]


def line_label(hue: tuple[str, ...], key: Key) -> str:
    names = short_names(list(hue))
    if len(hue) == 1:
        return format_value(key[0])
    return ", ".join(f"{names[axis]}={format_value(value)}" for axis, value in zip(
        hue, key, strict=True))


def plain_ticks(ax: Axes) -> None:
    """Tick labels as plain numbers (16, 0.2) rather than powers (2^4, 2x10^-1); a base-10
    axis that spans little more than a decade also labels some minor ticks."""
    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() != "log":
            continue
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        if axis.get_transform().base == 10:
            axis.set_minor_formatter(FuncFormatter(_minor_label(axis)))


def _minor_label(axis: Axis) -> Callable[[float, int], str]:
    def label(value: float, _: int) -> str:
        low, high = axis.get_view_interval()
        if value <= 0 or low <= 0 or high / low > 100:
            return ""
        mantissa = round(value / 10 ** math.floor(math.log10(value)))
        return f"{value:g}" if mantissa in (2, 3, 5) else ""
    return label


def legend(ax: Axes, hue: tuple[str, ...], count: int) -> None:
    """The legend inside the axes for a few lines, to the right of them for many."""
    title = short_names(list(hue))[hue[0]] if len(hue) == 1 else None
    if count > 4:
        ax.legend(title=title, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    else:
        ax.legend(title=title, fontsize="small")


def _powers_of_two(values: np.ndarray) -> bool:
    return bool(np.all(values > 0)) and all(math.log2(v).is_integer() for v in values)


def metric_plot(runs: pd.DataFrame, plot: PlotSpec, metric: MetricSpec,
                settings: ReportSettings, folder: Path) -> Plot | None:
    """One figure: `metric` against `plot.x`; None when there is nothing to draw."""
    x_column, y_column = f"params.{plot.x}", f"metrics.{metric.name}"
    if x_column not in runs or y_column not in runs:
        return None
    done = runs[(runs["status"] == FINISHED) & runs[y_column].notna()]
    done = done[pd.to_numeric(done[x_column], errors="coerce").notna()]
    hue = tuple(axis for axis in settings.axes if axis != plot.x)
    x_label = axis_label(plot.x)
    title = f"{metric.label} vs {x_label}"
    stem = f"{slug(metric.name)}_vs_{slug(plot.x)}"
    if done.empty:
        return None
    fits = []
    with figure() as fig:
        ax = fig.add_subplot()
        lines = lines_by(done, hue, settings)
        for (key, members), color in zip(lines, colors(len(lines)), strict=True):
            stats = seed_stats(members.astype({x_column: float}), x_column, y_column)
            xs, mean, std = (stats[c].to_numpy(dtype=float) for c in (x_column, "mean", "std"))
            label = line_label(hue, key) if hue else ""
            if plot.fit and len(np.unique(xs[(xs > 0) & (mean > 0)])) >= 2:
                slope, intercept = power_law_fit(xs, mean)
                fits.append(Fit(label, slope, intercept))
                grid = np.geomspace(xs[xs > 0].min(), xs.max(), 50)
                ax.plot(grid, 10 ** intercept * grid ** slope, linestyle="--", linewidth=1,
                        color=color)
                text = f"slope {slope:.3f}".replace("-", "\N{MINUS SIGN}")
                label = f"{label}: {text}" if label else text
            low = mean - std
            if plot.logy:
                low = np.where(low > 0, low, mean / 10)
            ax.fill_between(xs, low, mean + std, color=color, alpha=0.2, linewidth=0)
            ax.plot(xs, mean, marker="o", markersize=4, color=color,
                    label=label or None)
        if plot.logx:
            all_x = done[x_column].astype(float).unique()
            ax.set_xscale("log", base=2 if _powers_of_two(all_x) else 10)
        if plot.logy:
            ax.set_yscale("log")
        plain_ticks(ax)
        ax.set_xlabel(x_label)
        ax.set_ylabel(metric_header(metric))
        if hue or fits:
            legend(ax, hue, len(lines))
        files = save(fig, folder / stem)
    return Plot(title, stem, files, fits)


def axis_plots(runs: pd.DataFrame, settings: ReportSettings, folder: Path) -> list[Plot]:
    specs = {metric.name: metric for metric in settings.metrics}
    plots = []
    for plot in settings.plots or ():
        for name in plot.metrics:
            made = metric_plot(runs, plot, specs.get(name) or metric_spec(name), settings,
                               folder)
            if made is not None:
                plots.append(made)
    return plots
