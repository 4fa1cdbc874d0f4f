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
