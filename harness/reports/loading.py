"""MLflow -> pandas: one sweep's parent run, its trial runs as a frame, and metric histories."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from harness.errors import HarnessError
from harness.tracking import STAGE_REFERENCE, STAGE_SWEEP, STAGE_TRIAL, child_runs, sweep_runs

FINISHED = "FINISHED"


def unavailable_tags(metric: str) -> tuple[str, str]:
    """Columns of the tags that give why a metric could not be computed; both spellings are
    in use: `unavailable/<metric>` and `<metric>.unavailable` (harness.metrics.result)."""
    return f"tags.unavailable/{metric}", f"tags.{metric}.unavailable"


class ReportError(HarnessError):
    """The store, experiment or sweep a report needs is not there."""


@dataclass(frozen=True)
class Sweep:
    """One sweep: the parent run's facts and one row per trial run (see `runs_frame`)."""

    experiment: str
    sweep_id: str
    parent_run_id: str
    status: str
    start_time: int | None  # ms since the epoch, from the parent run
    tags: dict[str, str]
    uri: str
    runs: pd.DataFrame = field(repr=False)
    # the reference rows' runs (real data, stage-1 reconstructions, untrained denoiser)
    references: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    @property
    def date(self) -> str:
        if self.start_time is None:
            return "unknown"
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.start_time / 1000))

    @property
    def commits(self) -> list[str]:
        """The git commits the trials ran at (normally one), else the parent run's."""
        found = set(self.runs.get("git_commit", pd.Series(dtype=object)).dropna())
        return sorted(found or {self.tags.get("git_commit", "unknown")})


def open_store(uri: str) -> MlflowClient:
    """A client on an existing store; a sqlite file that is not there is an error, not created."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ReportError(f"no MLflow store at {path}: run `harness run` first, or pass "
                              "--tracking-uri")
    return MlflowClient(uri)


def find_parent(uri: str, experiment: str, sweep_id: str | None = None) -> Run:
    """The parent run of `sweep_id` (any experiment of the store), else the experiment's latest."""
    client = open_store(uri)
    found = client.get_experiment_by_name(experiment)
    if sweep_id is None:
        parents = sweep_runs(uri, found.experiment_id) if found else []
        if not parents:
            raise ReportError(f"no sweep of experiment {experiment!r} in {uri}")
        return parents[0]
    query = f"tags.stage = '{STAGE_SWEEP}' and tags.sweep_id = '{sweep_id}'"
    ids = [found.experiment_id] if found else []
    ids += sorted({e.experiment_id for e in client.search_experiments()} - set(ids))
    for experiment_id in ids:
        parents = client.search_runs([experiment_id], filter_string=query, max_results=1)
        if parents:
            return parents[0]
    raise ReportError(f"no sweep {sweep_id!r} in {uri}")


def load_sweep(uri: str, experiment: str, sweep_id: str | None = None) -> Sweep:
    """The latest sweep of `experiment`, or the sweep `sweep_id`, with its trial runs."""
    parent = find_parent(uri, experiment, sweep_id)
    tags = dict(parent.data.tags)
    experiment_id = parent.info.experiment_id
    name = open_store(uri).get_experiment(experiment_id).name
    runs = child_runs(uri, experiment_id, tags["sweep_id"], STAGE_TRIAL)
    references = child_runs(uri, experiment_id, tags["sweep_id"], STAGE_REFERENCE)
    return Sweep(name, tags["sweep_id"], parent.info.run_id, parent.info.status,
                 parent.info.start_time, tags, uri, runs_frame(runs), runs_frame(references))


def parse_param(text: str) -> Any:
    """A param string back to a number where it is one, so that axes sort numerically."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value (pandas hands out np.int64), NaN as None."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def is_number(value: Any) -> bool:
    return isinstance(plain(value), int | float) and not isinstance(plain(value), bool)


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per trial run: run_id, trial_id, status, seed, error, swept (dict), curves (the
    metrics logged at a step > 0), params.<key> (parsed), metrics.<name>, tags.<key>.

    A trial re-run by `--resume` has several runs with one config hash; the FINISHED one (else
    the newest) stands for it.
    """
    records = []
    for run in runs:
        tags = run.data.tags
        record: dict[str, Any] = {
            "run_id": run.info.run_id, "trial_id": tags.get("trial_id", run.info.run_name),
            "status": run.info.status, "start_time": run.info.start_time,
            "config_hash": tags.get("config_hash", run.info.run_id),
            "error": tags.get("error", ""), "git_commit": tags.get("git_commit"),
            "swept": json.loads(tags.get("swept") or "{}"),
            "curves": tuple(sorted({m.key for m in run.data.to_proto().metrics if m.step > 0})),
        }
        record |= {f"params.{k}": parse_param(v) for k, v in run.data.params.items()}
        record |= {f"metrics.{k}": v for k, v in run.data.metrics.items()}
        record |= {f"tags.{k}": v for k, v in tags.items()}
        records.append(record)
    if not records:
        return pd.DataFrame(columns=["run_id", "trial_id", "status", "start_time", "config_hash",
                                     "error", "git_commit", "swept", "curves"])
    frame = pd.DataFrame.from_records(records)
    frame["rank"] = (frame["status"] != FINISHED).astype(int)
    frame = frame.sort_values(["config_hash", "rank", "start_time", "run_id"],
                              ascending=[True, True, False, True])
    frame = frame.drop_duplicates("config_hash").drop(columns="rank")
    frame["seed"] = frame.get("params.seed")
    ordered = sorted(frame.columns, key=lambda c: (c.split(".")[0] in ("params", "metrics",
                                                                        "tags"), c))
    return frame.sort_values(["trial_id", "run_id"])[ordered].reset_index(drop=True)


def metric_history(uri: str, run_ids: list[str], key: str) -> pd.DataFrame:
    """The step history of one metric in several runs: columns run_id, step, value; a step
    logged twice keeps its latest value."""
    client = MlflowClient(uri)
    rows = [(run_id, m.step, m.timestamp, m.value) for run_id in run_ids
            for m in client.get_metric_history(run_id, key)]
    frame = pd.DataFrame(rows, columns=["run_id", "step", "timestamp", "value"])
    frame = frame.sort_values(["run_id", "step", "timestamp"]).drop_duplicates(
        ["run_id", "step"], keep="last")
    return frame.drop(columns="timestamp").reset_index(drop=True)
