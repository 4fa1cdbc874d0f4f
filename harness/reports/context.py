"""What a report table's numbers are measured against: the sweep's reference rows (real data,
stage-1 reconstructions, an untrained denoiser) beside the arms, the arms the seeds cannot tell
from the best, and arms that beat real data, which is a protocol problem, not a result."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from harness.reports.cells import Cell, make_cell
from harness.reports.statistics import compare_to_best, summarize

ALPHA = 0.05
TEST = "welch"
ROW_ORDER = ("real_data", "stage1_recon", "untrained")
SIGNIFICANCE_NOTE = (f"† not distinguishable from the best (Welch's t-test over seeds, "
                     f"Holm-corrected over the arms, α = {ALPHA})")
INTERVAL_NOTE = ("[a, b]: 95% interval (Student t over seeds; with one seed, and for the "
                 "reference rows, bootstrap over the generated set)")


def arm_interval(cell: Cell) -> tuple[float, float] | None:
    """The seeds' Student-t 95% interval of the mean (two seeds or more), else the one run's
    bootstrap interval; None where there is neither."""
    summary = summarize("", cell.values)
    if summary.ci is not None:
        return summary.ci
    if cell.n == 1 and len(cell.intervals) == 1:
        return cell.intervals[0]
    return None


@dataclass(frozen=True)
class ReferenceLine:
    key: str  # real_data, stage1_recon or untrained
    label: str  # the run's name, e.g. `stage-1 reconstructions (stage1 conv_ae f=4)`
    cells: list[Cell]  # one per metric asked for; no values where the row lacks the metric


def reference_lines(references: pd.DataFrame, metrics: list[str]) -> list[ReferenceLine]:
    """One line per reference run of the sweep, real data first."""
    if references.empty or "tags.reference_row" not in references:
        return []
    lines = []
    for _, run in references.iterrows():
        frame = references[references["run_id"] == run["run_id"]]
        key = str(run["tags.reference_row"])
        label = str(run.get("tags.mlflow.runName") or key)
        lines.append(ReferenceLine(key, label, [make_cell(frame, metric) for metric in metrics]))
    return sorted(lines, key=lambda line: (ROW_ORDER.index(line.key)
                                          if line.key in ROW_ORDER else len(ROW_ORDER),
                                          line.label))


def indistinguishable(cells: list[Cell], better: str | None) -> list[bool]:
    """For each arm: tested against the best arm and not significantly different. The best
    arm itself and arms that cannot be tested (one seed) are not marked."""
    if better not in ("lower", "higher"):
        return [False] * len(cells)
    arms = {str(index): cell.values for index, cell in enumerate(cells) if cell.values}
    tied = {int(c.arm) for c in compare_to_best(arms, better == "higher", ALPHA, TEST)
            if c.testable and not c.significant}
    return [index in tied for index in range(len(cells))]


def beats_real_data(cell: Cell, real: Cell, better: str | None) -> bool:
    """The arm is better than real data by more than both their uncertainties: a generator
    cannot beat the data it imitates, so the protocol (reference set, N, features) is wrong."""
    if better not in ("lower", "higher") or not cell.values or not real.values:
        return False
    arm_low, arm_high = arm_interval(cell) or (cell.mean, cell.mean)
    real_low, real_high = real.intervals[0] if real.intervals else (real.mean, real.mean)
    if not all(math.isfinite(v) for v in (arm_low, arm_high, real_low, real_high)):
        return False
    return arm_high < real_low if better == "lower" else arm_low > real_high
