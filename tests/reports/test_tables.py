"""The report table: ranks, mean and std over seeds, failures, in Markdown, LaTeX and CSV."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

import pytest

from harness.reports.loading import load_sweep
from harness.reports.report import write_report
from tests.reports.helpers import ABLATION, FUSIONS, ablation_settings, table_rows


@pytest.fixture(scope="module")
def ablation_report(store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ablation")
    write_report(load_sweep(store, "ablation"), ablation_settings(), out)
    return out


def test_bold_and_underline_follow_the_direction_of_better(ablation_report: Path) -> None:
    rows = table_rows((ablation_report / "table.md").read_text())
    psnr, lpips = "PSNR (dB) ↑", "LPIPS ↓"
    assert rows["adaptive"][psnr].startswith("**30.50 ± 0.71**")
    assert rows["concat"][psnr].startswith("<ins>25.50 ± 0.71</ins>")
    assert rows["add"][lpips].startswith("**0.1100 ± 0.0141**")
    assert rows["adaptive"][lpips].startswith("<ins>0.1550 ± 0.0071</ins>")
    plain = [rows[name][psnr] for name in ("add", "gated")]
    assert not any("**" in cell or "<ins>" in cell for cell in plain)
    latex = (ablation_report / "table.tex").read_text()
    assert r"\textbf{30.50 $\pm$ 0.71}" in latex and r"\underline{25.50 $\pm$ 0.71}" in latex
    assert r"\textbf{0.1100 $\pm$ 0.0141}" in latex
    assert r"\underline{0.1550 $\pm$ 0.0071}" in latex
    assert all(rule in latex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    assert r"PSNR (dB) $\uparrow$" in latex and r"LPIPS $\downarrow$" in latex


def test_mean_and_std_over_seeds(ablation_report: Path) -> None:
    with (ablation_report / "table.csv").open() as file:
        rows = {row["stage2.fusion"]: row for row in csv.DictReader(file)}
    for fusion, seeds in ABLATION.items():
        psnr = [values[0] for values in seeds if values is not None]
        row = rows[fusion]
        assert int(row["recon/psnr n"] or 0) == len(psnr)
        if psnr:
            assert float(row["recon/psnr mean"]) == pytest.approx(statistics.fmean(psnr))
        if len(psnr) >= 2:
            assert float(row["recon/psnr std"]) == pytest.approx(statistics.stdev(psnr))
        else:
            assert row["recon/psnr std"] == ""
    assert math.isclose(float(rows["add"]["recon/lpips std"]), math.sqrt(2) / 100)


def test_failed_configurations_show_a_cross_and_partial_ones_a_footnote(
        ablation_report: Path) -> None:
    markdown = (ablation_report / "table.md").read_text()
    rows = table_rows(markdown)
    broken, gated = rows["broken"], rows["gated"]
    assert all(cell.startswith("✗") for header, cell in broken.items() if header != "fusion")
    assert gated["PSNR (dB) ↑"].startswith("24.00 (n=1)<sup>")
    assert rows["add"]["FID ↓"].startswith("n/a<sup>")
    assert "all 2 runs failed: FAILED (seeds 0, 1): RuntimeError: broken diverged" in markdown
    assert "mean over 1 of 2 runs; FAILED (seed 1): RuntimeError: gated diverged" in markdown
    assert "unavailable: no Inception weights offline" in markdown
    assert r"$\times$" in (ablation_report / "table.tex").read_text()
    assert [line.split("|")[1].strip() for line in markdown.splitlines()[4:9]] == FUSIONS
    index = (ablation_report / "index.md").read_text()
    assert "`sweep-new`" in index and "`c0ffee1`" in index and "2023-11-14 22:15 UTC" in index
    assert markdown.strip() in index and "## Runs that did not finish" in index
