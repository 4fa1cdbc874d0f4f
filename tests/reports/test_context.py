"""A table's context: reference rows under the arms, intervals, † for arms the seeds cannot tell
from the best, and a protocol warning when an arm beats real data."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import ReportConfig, ReportMetric
from harness.reports.loading import load_sweep
from harness.reports.report import write_report
from harness.reports.settings import from_experiment
from harness.reports.tables import build_table
from tests.reports.helpers import add_sweep

SEEDS = 8


def fid_trials(means: dict[str, float], real_fid: float) -> list[dict[str, Any]]:
    """Arms with SEEDS seeds each, FID ~ N(mean, 1); then the three reference rows."""
    rng = np.random.default_rng(1)
    trials: list[dict[str, Any]] = [
        {"params": {"stage2.fusion": fusion, "seed": seed},
         "metrics": {"fid": float(mean + rng.normal())}}
        for fusion, mean in means.items() for seed in range(SEEDS)]
    for row, value in (("real_data", real_fid), ("stage1_recon", real_fid + 5),
                       ("untrained", 400.0)):
        trials.append({"params": {}, "metrics": {"fid": value, "fid_ci_low": value - 2,
                                                 "fid_ci_high": value + 2},
                       "tags": {"stage": "reference", "reference_row": row}})
    return trials


def table_for(store: str, experiment: str, means: dict[str, float], real_fid: float
              ) -> Any:
    add_sweep(store, experiment, experiment, 1_700_000_300_000, fid_trials(means, real_fid))
    report = ReportConfig(rows=["stage2.fusion"], metrics=[ReportMetric(name="fid",
                                                                        better="lower")])
    sweep = load_sweep(store, experiment)
    return sweep, from_experiment(report, {}), build_table(sweep.runs, from_experiment(
        report, {}), sweep.references)


def test_arms_from_one_distribution_are_marked_and_a_worse_one_is_not(store: str) -> None:
    _, _, table = table_for(store, "context-ties", {"add": 50.0, "concat": 50.3,
                                                    "adaptive": 70.0}, real_fid=30.0)
    ties = {key[0]: line[0].tie for key, line in zip(table.rows, table.entries, strict=True)}
    assert ties == {"add": False, "concat": True, "adaptive": False} or ties == {
        "add": True, "concat": False, "adaptive": False}
    assert all(line[0].interval.startswith("[") for line in table.entries)
    assert not table.beats_real_data


def test_reference_rows_follow_the_arms_in_every_format(store: str, tmp_path: Path) -> None:
    sweep, settings, table = table_for(store, "context-rows", {"add": 50.0, "concat": 60.0},
                                       real_fid=30.0)
    # real data, stage-1 reconstructions, untrained denoiser (named after their runs here)
    assert [label for label, _ in table.references] == [
        "context-rows-016", "context-rows-017", "context-rows-018"]
    report = write_report(sweep, settings, tmp_path)
    markdown = (tmp_path / "table.md").read_text()
    lines = markdown.splitlines()
    real = next(line for line in lines if line.startswith("| *context-rows-016*"))
    assert "30.00 [28.00, 32.00]" in real
    assert lines.index(real) > max(i for i, line in enumerate(lines) if "| concat" in line)
    assert "a perfect generator gets at this N" in markdown and "PROTOCOL" not in markdown
    assert r"\textit{context-rows-016}" in (tmp_path / "table.tex").read_text()
    with (tmp_path / "table.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["reference_row"] for row in rows][-3:] == [
        "context-rows-016", "context-rows-017", "context-rows-018"]
    assert float(rows[-3]["fid ci_low"]) == 28.0
    assert report.table.references


def test_an_arm_better_than_real_data_is_a_protocol_problem(store: str, tmp_path: Path) -> None:
    sweep, settings, table = table_for(store, "context-beats", {"add": 20.0, "concat": 40.0},
                                       real_fid=30.0)
    assert table.beats_real_data == ["add: FID"]
    add = table.entries[table.rows.index(("add",))][0]
    assert add.problem and dict(table.notes)[add.note].startswith("better than real data")
    write_report(sweep, settings, tmp_path)
    assert "PROTOCOL PROBLEM" in (tmp_path / "table.md").read_text()
    assert "PROTOCOL PROBLEM" in (tmp_path / "index.md").read_text()
