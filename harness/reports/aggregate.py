"""Statistics of one metric per configuration: mean and std over seeds, failures, gaps."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.reports.loading import FINISHED, unavailable_tags

Key = tuple[Any, ...]


@dataclass(frozen=True)
class Cell:
    """One metric of one configuration over its runs (one run per seed)."""

    values: tuple[float, ...]  # the finished runs' values, in seed order
    runs: int  # runs of this configuration, finished or not
    finished: int
    failures: tuple[tuple[str, str, str], ...]  # (seed, status, error) of each unfinished run
    unavailable: tuple[str, ...]  # reasons given by finished runs that could not compute it

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


def first_line(text: str, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[:limit - 1] + "…"


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


def _failure(run: pd.Series) -> tuple[str, str, str]:
    return str(run.get("seed")), str(run["status"]), first_line(str(run.get("error") or ""))


def make_cell(runs: pd.DataFrame, metric: str) -> Cell:
    runs = runs.sort_values(["seed", "run_id"], na_position="last")
    finished = runs[runs["status"] == FINISHED]
    column = f"metrics.{metric}"
    values = finished[column].dropna() if column in finished else pd.Series(dtype=float)
    reasons = [reason for column in unavailable_tags(metric) if column in finished
               for reason in finished[column].dropna()]
    return Cell(tuple(float(v) for v in values if math.isfinite(v)), len(runs), len(finished),
                tuple(_failure(run) for _, run in runs[runs["status"] != FINISHED].iterrows()),
                tuple(sorted({first_line(str(reason)) for reason in reasons})))


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value (pandas hands out np.int64), NaN as None."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def is_number(value: Any) -> bool:
    return isinstance(plain(value), int | float) and not isinstance(plain(value), bool)


def config_key(run: pd.Series, axes: tuple[str, ...]) -> Key:
    return tuple(plain(run.get(f"params.{axis}")) for axis in axes)


def group_runs(runs: pd.DataFrame, axes: tuple[str, ...]) -> dict[Key, pd.DataFrame]:
    """The runs of each configuration, keyed by the values of `axes`."""
    keys = [config_key(run, axes) for _, run in runs.iterrows()]
    groups: dict[Key, list[int]] = {}
    for position, key in enumerate(keys):
        groups.setdefault(key, []).append(position)
    return {key: runs.iloc[positions] for key, positions in groups.items()}


def sort_key(value: Any, preferred: tuple[str, ...] = ()) -> tuple[Any, ...]:
    """YAML sweep order first, then numbers ascending, then text."""
    if str(value) in preferred:
        return (0, preferred.index(str(value)), 0.0, "")
    if is_number(value):
        return (1, 0, float(value), "")
    return (2, 0, 0.0, str(value))


def ordered_keys(keys: list[Key], orders: list[tuple[str, ...]]) -> list[Key]:
    return sorted(set(keys), key=lambda key: tuple(
        sort_key(value, order) for value, order in zip(key, orders, strict=True)))
