"""A report cell: one metric of one configuration over its runs (one run per seed), with
what kept runs from giving it (failures, unavailable reasons)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import pandas as pd

from harness.reports.loading import FINISHED, unavailable_tags


def first_line(text: str, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[:limit - 1] + "…"


@dataclass(frozen=True)
class Cell:
    """One metric of one configuration over its runs (one run per seed)."""

    values: tuple[float, ...]  # the finished runs' values, in seed order
    runs: int  # runs of this configuration, finished or not
    finished: int
    failures: tuple[tuple[str, str, str], ...]  # (seed, status, error) of each unfinished run
    unavailable: tuple[str, ...]  # reasons given by finished runs that could not compute it
    # each finished run's bootstrap 95% interval of the metric, where it logged one
    intervals: tuple[tuple[float, float], ...] = ()

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof 1); NaN below two values."""
        return statistics.stdev(self.values) if self.n >= 2 else math.nan

    @property
    def kind(self) -> str:
        """value, partial (some runs failed or lack it), failed, unavailable or missing."""
        if self.runs and not self.finished:
            return "failed"
        if not self.values:
            return "unavailable" if self.unavailable else "missing"
        return "partial" if self.n < self.runs else "value"


def _failure(run: pd.Series) -> tuple[str, str, str]:
    return str(run.get("seed")), str(run["status"]), first_line(str(run.get("error") or ""))


def make_cell(runs: pd.DataFrame, metric: str) -> Cell:
    runs = runs.sort_values(["seed", "run_id"], na_position="last")
    finished = runs[runs["status"] == FINISHED]
    column = f"metrics.{metric}"
    values = finished[column].dropna() if column in finished else pd.Series(dtype=float)
    reasons = [reason for column in unavailable_tags(metric) if column in finished
               for reason in finished[column].dropna()]
    low, high = f"metrics.{metric}_ci_low", f"metrics.{metric}_ci_high"
    intervals = (tuple((float(run[low]), float(run[high])) for _, run in finished.iterrows()
                       if pd.notna(run[low]) and pd.notna(run[high]))
                 if low in finished and high in finished else ())
    return Cell(tuple(float(v) for v in values if math.isfinite(v)), len(runs), len(finished),
                tuple(_failure(run) for _, run in runs[runs["status"] != FINISHED].iterrows()),
                tuple(sorted({first_line(str(reason)) for reason in reasons})), intervals)


def describe_failures(failures: tuple[tuple[str, str, str], ...]) -> str:
    """'FAILED (seeds 0, 1): ValueError: x' with one clause per distinct status and error."""
    seeds: dict[tuple[str, str], list[str]] = {}
    for seed, status, error in failures:
        seeds.setdefault((status, error), []).append(seed)
    clauses = []
    for (status, error), members in seeds.items():
        which = f"seed{'s' if len(members) > 1 else ''} {', '.join(members)}"
        clauses.append(f"{status} ({which})" + (f": {error}" if error else ""))
    return "; ".join(clauses)
