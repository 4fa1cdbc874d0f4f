"""What a report shows: the YAML's `report` block, defaults for the metrics the harness logs,
and both resolved against a sweep's runs."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import ConfigError
from harness.reports.loading import is_number

# last path segment of a metric name -> (label, unit, better); the names the harness logs
KNOWN_METRICS: dict[str, tuple[str, str, str]] = {
    "fid": ("FID", "", "lower"),
    "rfid": ("rFID", "", "lower"),
    "kid": ("KID", "", "lower"),
    "kid_per_class": ("per-class KID", "", "lower"),
    "is": ("IS", "", "higher"),
    "lpips": ("LPIPS", "", "lower"),
    "ssim": ("SSIM", "", "higher"),
    "psnr": ("PSNR", "dB", "higher"),
    "l1": ("L1", "", "lower"),
    "l2": ("L2", "", "lower"),
    "mse": ("MSE", "", "lower"),
    "precision": ("precision", "", "higher"),
    "recall": ("recall", "", "higher"),
    "loss": ("loss", "", "lower"),
    "params": ("params", "", "lower"),
    "flops": ("FLOPs", "", "lower"),
    "train_seconds": ("train time", "s", "lower"),
    "images_per_second": ("throughput", "img/s", "higher"),
    "samples_per_second": ("throughput", "samples/s", "higher"),
    "peak_memory_mb": ("peak memory", "MB", "lower"),
}
BOOKKEEPING = ("num_images", "cache_hit")
LOG_LOG_AXES = ("K",)  # a power law in these is a straight line on log-log axes (seed 002 Fig. 7)
LOG_X_AXES = ("ddim_steps", "N", "steps", "num_samples")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    better: str | None  # "lower", "higher", or None (not ranked)
    label: str
    unit: str = ""
    decimals: int | None = None


@dataclass(frozen=True)
class PlotSpec:
    x: str  # param key of the x axis, or a metric key (sample/nfe)
    metrics: tuple[str, ...]
    logx: bool = False
    logy: bool = False
    fit: bool = False  # least-squares power law on log-log axes, slope in the legend
    lines: tuple[str, ...] | None = None  # the axes that make one line each; None: all but x
    points: str | None = None  # a swept key: one labeled point per value, joined in its order


@dataclass(frozen=True)
class ReportSettings:
    rows: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    metrics: tuple[MetricSpec, ...] = ()
    plots: tuple[PlotSpec, ...] | None = None  # None: chosen from the numeric axes
    curves: tuple[str, ...] | None = None  # None: every metric logged at more than one step
    raw: dict[str, Any] = field(default_factory=dict)  # the YAML, for the order of sweep values
    source: Path | None = None  # the experiment YAML, for error messages

    @property
    def axes(self) -> tuple[str, ...]:
        return self.rows + self.columns

    def value_order(self, key: str) -> tuple[str, ...]:
        """The values of a `sweep`/`choice` leaf as the YAML lists them, as strings."""
        node: Any = self.raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return ()
            node = node[part]
        values = (node.get("sweep") or node.get("choice")) if isinstance(node, dict) else None
        return tuple(str(value) for value in values) if isinstance(values, list) else ()

    def metric(self, name: str) -> MetricSpec:
        """The configured spec of a metric, else the defaults for its name."""
        return {metric.name: metric for metric in self.metrics}.get(name) or metric_spec(name)


def metric_info(name: str) -> tuple[str, str, str | None]:
    """(label, unit, better) of a metric name such as `recon/psnr`; better is None if unknown."""
    prefix, _, last = name.rpartition("/")
    if last == "fid" and prefix.endswith("recon"):
        return "rFID", "", "lower"
    if last in KNOWN_METRICS:
        return KNOWN_METRICS[last]
    if "loss" in last:
        return name, "", "lower"
    if last.endswith("_seconds"):
        return name, "s", "lower"
    return name, "", None


def is_bookkeeping(name: str) -> bool:
    return name.rpartition("/")[2] in BOOKKEEPING


def _field(item: Any, name: str, default: Any = None) -> Any:
    """Read an optional setting from a pydantic model or a dict, whichever the schema gives."""
    value = item.get(name, default) if isinstance(item, dict) else getattr(item, name, default)
    return default if value is None else value


def metric_spec(name: str, better: str | None = None, item: Any = None) -> MetricSpec:
    label, unit, known_better = metric_info(name)
    direction = None if better == "none" else better or known_better
    return MetricSpec(name, direction, _field(item, "label", label),
                      _field(item, "unit", unit), _field(item, "decimals"))


def _plot_spec(item: Any) -> PlotSpec:
    fit = bool(_field(item, "fit"))  # a power-law fit is a line on log-log axes
    lines, points = _field(item, "lines"), _field(item, "points")
    if points is not None and lines is None:
        lines = ()  # the points are one curve
    return PlotSpec(_field(item, "x"), tuple(_field(item, "metrics", ())),
                    fit or bool(_field(item, "logx")), fit or bool(_field(item, "logy")), fit,
                    tuple(lines) if lines is not None else None, points)


def from_experiment(report: Any, raw: dict[str, Any], source: Path | None = None
                    ) -> ReportSettings:
    """Settings from an experiment's `report` block (a ReportConfig) and its raw YAML."""
    metrics = tuple(metric_spec(item.name, item.better, item) for item in report.metrics)
    plots = _field(report, "plots")
    if plots is not None:
        plots = tuple(_plot_spec(item) for item in plots)
    curves = _field(report, "curves")
    return ReportSettings(tuple(report.rows), tuple(report.columns), metrics, plots,
                          tuple(curves) if curves is not None else None, raw, source)


def resolve(settings: ReportSettings, runs: pd.DataFrame) -> ReportSettings:
    """Fill what the report block leaves open from the runs, and check the axes exist."""
    params = sorted(column.removeprefix("params.") for column in runs.columns
                    if column.startswith("params."))
    rows = settings.rows or _swept_keys(runs)
    logged = {column.removeprefix("metrics.") for column in runs.columns
              if column.startswith("metrics.")}
    # A plot against a metric no run logged (IS without the logits weights) is left out.
    plot_axes = tuple(plot.x for plot in settings.plots or ()
                      if plot.x not in logged and metric_info(plot.x)[2] is None)
    plot_lines = tuple(key for plot in settings.plots or ()
                       for key in (*(plot.lines or ()), *filter(None, [plot.points])))
    for block, keys in (("rows", rows), ("columns", settings.columns), ("plots", plot_axes),
                        ("plots.lines", plot_lines)):
        missing = [key for key in keys if key not in params]
        if missing:
            close = difflib.get_close_matches(missing[0], params, n=3)
            hint = (f"did you mean {' or '.join(close)}?" if close else
                    f"the swept keys are {', '.join(_swept_keys(runs)) or 'none'}")
            raise ConfigError(settings.source, f"report.{block}",
                              f"no param {', '.join(missing)} in the sweep's runs; {hint}")
    metrics = _distinct_labels(settings.metrics or _default_metrics(runs))
    plots = settings.plots
    if plots is None:
        plots = _default_plots(rows + settings.columns, metrics, runs)
    else:
        plots = tuple(replace(plot, metrics=plot.metrics or tuple(m.name for m in metrics))
                      for plot in plots)
    return replace(settings, rows=rows, metrics=metrics, plots=plots)


def _distinct_labels(metrics: tuple[MetricSpec, ...]) -> tuple[MetricSpec, ...]:
    """Metrics that would share a header (recon/psnr, samples/psnr) show their full names."""
    labels = [metric.label for metric in metrics]
    return tuple(replace(metric, label=metric.name) if labels.count(metric.label) > 1 else metric
                 for metric in metrics)


def _swept_keys(runs: pd.DataFrame) -> tuple[str, ...]:
    """Every swept key except the seed, from the runs' `swept` tags."""
    keys = {key for swept in runs.get("swept", []) for key in swept}
    return tuple(sorted(keys - {"seed"}))


def _default_metrics(runs: pd.DataFrame) -> tuple[MetricSpec, ...]:
    names = sorted(column.removeprefix("metrics.") for column in runs.columns
                   if column.startswith("metrics."))
    specs = [metric_spec(name) for name in names if not is_bookkeeping(name)]
    return tuple(spec for spec in specs if spec.better is not None)


def is_numeric_axis(runs: pd.DataFrame, key: str) -> bool:
    values = runs.get(f"params.{key}", pd.Series(dtype=object)).dropna().unique()
    return len(values) >= 2 and all(is_number(value) for value in values)


def _default_plots(axes: tuple[str, ...], metrics: tuple[MetricSpec, ...], runs: pd.DataFrame
                   ) -> tuple[PlotSpec, ...]:
    """Metric against every numeric axis: log-log with a slope for K, log x for step counts."""
    names = tuple(metric.name for metric in metrics)
    plots = []
    for key in axes:
        if not is_numeric_axis(runs, key):
            continue
        last = key.rpartition(".")[2]
        loglog = last in LOG_LOG_AXES
        plots.append(PlotSpec(key, names, logx=loglog or last in LOG_X_AXES, logy=loglog,
                              fit=loglog))
    return tuple(plots)
