"""Figures: the power-law fit, metric against an axis, training curves."""

from __future__ import annotations

from pathlib import Path

from harness.reports.loading import load_sweep
from harness.reports.plots import power_law_fit
from harness.reports.report import write_report
from tests.reports.helpers import POWER_LAWS, codebook_settings


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
