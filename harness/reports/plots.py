"""Figures of a report: a metric against a numeric axis (K, DDIM steps, p, ...) with the fitted
power law on log-log axes, and training curves; one line per configuration, mean over seeds with
a ±1 std band, in a fixed style that gives the same bytes on every machine."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from harness.reports.loading import FINISHED, Sweep, metric_history
from harness.reports.settings import MetricSpec, PlotSpec, ReportSettings
from harness.reports.tables import (
    Key,
    format_value,
    group_runs,
    metric_header,
    ordered_keys,
    short_names,
    slug,
)

AXIS_LABELS = {"K": "codebook size K", "ddim_steps": "DDIM steps S", "p": "back-trace parameter p",
               "f": "compression factor f", "N": "tokens N", "T": "diffusion steps T",
               "eta": "DDIM η", "step": "training step",
               "sample/nfe": "function evaluations (NFE)", "guidance_scale": "guidance scale s",
               "precision": "precision", "recall": "recall",
               "is": "Inception Score"}

FIGURE_SIZE = (4.8, 3.4)  # inches
# Writers stamp the matplotlib version and the time; None drops the entry.
PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None}
Color = tuple[float, float, float]


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


def style() -> dict[str, Any]:
    params: dict[str, Any] = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper")}
    params |= {
        # DejaVu ships with matplotlib: the same glyphs on every machine.
        "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"],
        "mathtext.fontset": "dejavusans", "svg.hashsalt": "harness-report",
        "figure.dpi": 100, "savefig.dpi": 200, "pdf.fonttype": 42,
        "axes.prop_cycle": cycler(color=sns.color_palette("colorblind")),
    }
    return params


@contextmanager
def figure() -> Iterator[Figure]:
    """A figure on the Agg canvas (no pyplot, no global backend) inside the report style."""
    with matplotlib.rc_context(style()):
        fig = Figure(figsize=FIGURE_SIZE, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write stem.png and stem.pdf; call inside `figure()` so that the style applies."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.pdf"
    fig.savefig(png, format="png", metadata=PNG_METADATA)
    fig.savefig(pdf, format="pdf", metadata=PDF_METADATA)
    return [png, pdf]


def colors(count: int) -> list[Color]:
    palette = sns.color_palette("colorblind")
    return [palette[index % len(palette)] for index in range(count)]


def power_law_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) over the points with x > 0 and y > 0; needs two distinct x."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = (xs > 0) & (ys > 0) & np.isfinite(xs) & np.isfinite(ys)
    if len(np.unique(xs[keep])) < 2:
        raise ValueError("a power-law fit needs two distinct positive x values")
    slope, intercept = np.polyfit(np.log10(xs[keep]), np.log10(ys[keep]), 1)
    return float(slope), float(intercept)


def axis_label(key: str) -> str:
    """A plot axis label for a param key: `stage1.K` -> 'codebook size K'."""
    if key in AXIS_LABELS:
        return AXIS_LABELS[key]
    last = key.rpartition(".")[2]
    return AXIS_LABELS.get(last, last)


POINT_NAMES = {"guidance_scale": "s"}  # how a trade-off curve labels its points


def seed_stats(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Columns x, mean, std (ddof 1; 0 for one seed) per distinct x, sorted by x."""
    grouped = frame.groupby(x, sort=True)[y]
    stats = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1)})
    return stats.fillna({"std": 0.0}).reset_index()


def lines_by(runs: pd.DataFrame, hue: tuple[str, ...], settings: ReportSettings
             ) -> list[tuple[Key, pd.DataFrame, Color]]:
    """One line per configuration of the `hue` axes, in table order, each with its color."""
    groups = group_runs(runs, hue)
    order = ordered_keys(list(groups), hue, settings)
    return [(key, groups[key], color)
            for key, color in zip(order, colors(len(order)), strict=True)]


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
    """One figure: `metric` against `plot.x` (a param, or a metric such as sample/nfe); None
    when there is nothing to draw."""
    x_column, y_column = f"params.{plot.x}", f"metrics.{metric.name}"
    if x_column not in runs:
        x_column = f"metrics.{plot.x}"
    if x_column not in runs or y_column not in runs:
        return None
    done = runs[(runs["status"] == FINISHED) & runs[y_column].notna()]
    done = done[pd.to_numeric(done[x_column], errors="coerce").notna()]
    hue = plot.lines if plot.lines is not None else tuple(
        axis for axis in settings.axes if axis != plot.x)
    x_label = axis_label(plot.x)
    title = f"{metric.label} vs {x_label}"
    stem = f"{slug(metric.name)}_vs_{slug(plot.x)}"
    if done.empty:
        return None
    fits = []
    with figure() as fig:
        ax = fig.add_subplot()
        lines = lines_by(done, hue, settings)
        for key, members, color in lines:
            if plot.points is not None:
                trade_off_curve(ax, members, x_column, y_column, plot.points, color,
                                line_label(hue, key) if hue else None)
                continue
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
            ax.plot(xs, mean, marker="o", markersize=4, color=color, label=label or None)
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


def trade_off_curve(ax: Axes, runs: pd.DataFrame, x_column: str, y_column: str, points: str,
                    color: Color, label: str | None) -> None:
    """One point per value of the swept key `points` (the mean over seeds of x and y), joined
    in the order of that key and labeled with its value: e.g. FID against precision as the
    guidance scale grows."""
    column = f"params.{points}"
    means = (runs.astype({x_column: float, y_column: float})
             .groupby(column)[[x_column, y_column]].mean().reset_index())
    means = means.iloc[np.argsort(pd.to_numeric(means[column], errors="coerce").to_numpy())]
    ax.plot(means[x_column], means[y_column], marker="o", markersize=4, color=color,
            label=label)
    name = POINT_NAMES.get(points.rpartition(".")[2], short_names([points])[points])
    for value, x, y in means[[column, x_column, y_column]].itertuples(index=False):
        number = pd.to_numeric(value, errors="coerce")
        shown = f"{number:g}" if pd.notna(number) else format_value(value)
        ax.annotate(f"{name}={shown}", (x, y), textcoords="offset points",
                    xytext=(4, 4), fontsize="small")
    ax.margins(0.12)  # room for the labels


def axis_plots(runs: pd.DataFrame, settings: ReportSettings, folder: Path) -> list[Plot]:
    plots = []
    for plot in settings.plots or ():
        for name in plot.metrics:
            made = metric_plot(runs, plot, settings.metric(name), settings, folder)
            if made is not None:
                plots.append(made)
    return plots


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
    metric = settings.metric(name)
    hue = settings.axes
    with figure() as fig:
        ax = fig.add_subplot()
        lines = lines_by(done, hue, settings)
        for key, members, color in lines:
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
