"""A whole report folder, and the comparison of two sweeps."""

from __future__ import annotations

from pathlib import Path

from harness.reports.loading import load_sweep
from harness.reports.report import compare_sweeps, write_report
from tests.reports.helpers import ablation_settings, codebook_settings


def test_two_renders_of_the_same_runs_are_byte_identical(store: str, tmp_path: Path) -> None:
    sweep = load_sweep(store, "codebook")
    first = write_report(sweep, codebook_settings(), tmp_path / "one")
    second = write_report(load_sweep(store, "codebook"), codebook_settings(), tmp_path / "two")
    names = [path.relative_to(first.out) for path in first.files]
    assert names == [path.relative_to(second.out) for path in second.files]
    assert {name.suffix for name in names} == {".md", ".tex", ".csv", ".png", ".pdf"}
    for name in names:
        assert (first.out / name).read_bytes() == (second.out / name).read_bytes(), name


def test_compare_prints_shared_metrics_side_by_side(store: str) -> None:
    text = compare_sweeps(load_sweep(store, "ablation", "sweep-old"),
                          load_sweep(store, "ablation", "sweep-new"), ablation_settings())
    assert "A: sweep sweep-old" in text and "B: sweep sweep-new" in text
    line = next(row for row in text.splitlines() if "| adaptive " in row and "PSNR" in row)
    assert [cell.strip() for cell in line.strip("|").split("|")] == [
        "adaptive", "PSNR (dB) ↑", "29.50", "30.50", "+1.00", "+3.4%", "B"]
    assert "| broken " in text and "✗" in text
