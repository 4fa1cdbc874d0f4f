"""Figures: the power-law fit, metric against an axis, training curves."""

from __future__ import annotations

from pathlib import Path

from harness.config import ReportConfig, ReportMetric, ReportPlot
from harness.reports.loading import load_sweep
from harness.reports.plots import power_law_fit
from harness.reports.report import write_report
from harness.reports.settings import from_experiment
from tests.reports.helpers import POWER_LAWS, add_sweep, codebook_settings


def test_power_law_fit_recovers_the_exponent() -> None:
    ks = [2.0 ** m for m in range(4, 12)]
    slope, intercept = power_law_fit(ks, [2.0 * k ** -0.3 for k in ks])
    assert abs(slope + 0.3) < 1e-6 and abs(10 ** intercept - 2.0) < 1e-6


def test_log_log_plot_of_lpips_against_k_reports_the_slopes(store: str, tmp_path: Path) -> None:
    report = write_report(load_sweep(store, "codebook"), codebook_settings(), tmp_path)
    (plot,) = report.plots
    assert plot.stem == "lpips_vs_stage1-K"
    fits = {fit.line: fit.slope for fit in plot.fits}
    assert set(fits) == set(POWER_LAWS)
    for variant, (_, exponent) in POWER_LAWS.items():
        assert abs(fits[variant] - exponent) < 1e-6
    (curve,) = report.curves
    assert curve.stem == "curve_train-loss"
    index = (tmp_path / "index.md").read_text()
    for path in plot.files + curve.files:
        assert path.is_file() and path.stat().st_size > 1000
    assert "![LPIPS vs codebook size K](plots/lpips_vs_stage1-K.png)" in index
    assert "-0.3000 (ddcm), -0.5000 (gddcm)" in index
    header = (tmp_path / "table.md").read_text().splitlines()[2]
    assert "variant=ddcm LPIPS ↓" in header and "variant=gddcm LPIPS ↓" in header


def test_a_metric_on_the_x_axis_with_one_line_per_sampler(tmp_path: Path) -> None:
    """FID against the NFE each trial logged (Heun takes two evaluations per step), one line
    per sampler: the sampler-zoo figure."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    nfe = {"ddim": lambda steps: steps, "heun": lambda steps: 2 * steps - 1}
    add_sweep(uri, "samplers", "s1", 1000, [
        {"params": {"sample.sampler": sampler, "sample.ddim_steps": steps, "seed": 0},
         "metrics": {"fid": 100.0 / steps + (sampler == "heun"), "sample/nfe": nfe[sampler](
             steps)}}
        for sampler in nfe for steps in (5, 10, 20)])
    report = ReportConfig(rows=["sample.ddim_steps"], columns=["sample.sampler"],
                          metrics=[ReportMetric(name="fid", better="lower")],
                          plots=[ReportPlot(x="sample/nfe", lines=["sample.sampler"],
                                            logx=True, logy=True)])
    written = write_report(load_sweep(uri, "samplers"), from_experiment(report, {}),
                           tmp_path / "report")
    (plot,) = written.plots
    assert plot.stem == "fid_vs_sample-nfe" and plot.title == (
        "FID vs function evaluations (NFE)")
    assert all(path.stat().st_size > 1000 for path in plot.files)


def test_a_trade_off_curve_joins_one_labeled_point_per_guidance_scale(tmp_path: Path) -> None:
    """FID against precision as s grows: the points are joined in the order of s (not of
    precision) and each is labeled with its s."""
    import pandas as pd
    from matplotlib.figure import Figure

    from harness.reports.plots import trade_off_curve

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    points = {1.0: (0.30, 90.0), 2.0: (0.50, 80.0), 5.0: (0.40, 120.0), 10.0: (0.45, 150.0)}
    add_sweep(uri, "cfg", "s1", 1000, [
        {"params": {"sample.guidance_scale": scale, "seed": 0},
         "metrics": {"fid": fid, "sample/precision": precision}}
        for scale, (precision, fid) in points.items()])
    report = ReportConfig(rows=["sample.guidance_scale"],
                          metrics=[ReportMetric(name="fid", better="lower")],
                          plots=[ReportPlot(x="sample/precision",
                                            points="sample.guidance_scale")])
    written = write_report(load_sweep(uri, "cfg"), from_experiment(report, {}),
                           tmp_path / "report")
    (plot,) = written.plots
    assert plot.stem == "fid_vs_sample-precision" and plot.files[0].stat().st_size > 1000
    runs = pd.DataFrame({"params.sample.guidance_scale": ["5.0", "1.0", "10.0", "2.0"],
                         "metrics.x": [0.40, 0.30, 0.45, 0.50],
                         "metrics.y": [120.0, 90.0, 150.0, 80.0]})
    ax = Figure().add_subplot()
    trade_off_curve(ax, runs, "metrics.x", "metrics.y", "sample.guidance_scale", "k", None)
    assert list(ax.lines[0].get_xdata()) == [0.30, 0.50, 0.40, 0.45]
    assert [text.get_text() for text in ax.texts] == [
        "s=1", "s=2", "s=5", "s=10"]
