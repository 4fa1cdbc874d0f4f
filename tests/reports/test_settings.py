"""Report settings from the experiment's `report` block, resolved against the runs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from harness.config import ReportConfig, ReportMetric
from harness.errors import ConfigError
from harness.reports.loading import load_sweep
from harness.reports.report import write_report
from harness.reports.settings import from_experiment, resolve


def test_unknown_axis_is_a_config_error(store: str, tmp_path: Path) -> None:
    report = ReportConfig(rows=["stage2.fuzion"])
    with pytest.raises(ConfigError, match=r"report.rows: no param stage2.fuzion"):
        write_report(load_sweep(store, "ablation"), from_experiment(report, {}), tmp_path)


def test_default_plots_follow_the_axes() -> None:
    runs = pd.DataFrame({
        "params.stage1.K": [16, 64, 256], "params.sample.ddim_steps": [10, 20, 50],
        "params.gddcm.p": [0.05, 0.5, 0.95], "params.stage2.fusion": ["a", "b", "c"],
        "metrics.lpips": [0.3, 0.2, 0.1], "swept": [{"stage1.K": 16, "seed": 0}] * 3})
    report = ReportConfig(rows=["stage1.K", "sample.ddim_steps", "gddcm.p", "stage2.fusion"])
    plots = resolve(from_experiment(report, {}), runs).plots
    assert [(p.x, p.logx, p.logy, p.fit, p.metrics) for p in plots] == [
        ("stage1.K", True, True, True, ("lpips",)),
        ("sample.ddim_steps", True, False, False, ("lpips",)),
        ("gddcm.p", False, False, False, ("lpips",))]
    assert resolve(from_experiment(ReportConfig(), {}), runs).rows == ("stage1.K",)


def test_plots_and_curves_from_report_settings(store: str, tmp_path: Path) -> None:
    """The optional `plots` and `curves` of the report block (read from dicts or models)."""
    report = SimpleNamespace(rows=["stage1.K"], columns=[], metrics=[
        ReportMetric(name="lpips", better="lower")], curves=[],
        plots=[{"x": "stage1.K", "logx": True}])
    result = write_report(load_sweep(store, "codebook"), from_experiment(report, {}), tmp_path)
    assert [plot.stem for plot in result.plots] == ["lpips_vs_stage1-K"]
    assert result.plots[0].fits == [] and result.curves == []
    assert sorted(path.name for path in (tmp_path / "plots").iterdir()) == [
        "lpips_vs_stage1-K.pdf", "lpips_vs_stage1-K.png"]


def test_direction_of_better_defaults_from_the_name_and_none_is_not_ranked() -> None:
    report = ReportConfig(metrics=[ReportMetric(name="fid"), ReportMetric(name="stage1/psnr"),
                                   ReportMetric(name="stage1/latent_h", better="none"),
                                   ReportMetric(name="kid", better="higher")])
    specs = from_experiment(report, {}).metrics
    assert [spec.better for spec in specs] == ["lower", "higher", None, "higher"]
