"""MLflow tracking: the store, one parent run per sweep, one nested child run per trial.

The default store is `sqlite:///<cwd>/mlflow.db` with artifacts in `<cwd>/mlartifacts`;
`MLFLOW_TRACKING_URI` (or `--tracking-uri`) selects a server. The driver initialises the
store once before any trial starts, because concurrent first use of a new sqlite store
races on the schema migration. Paths are absolute because Ray workers run in other
working directories.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

import harness
from harness.data import save_grid

STAGE_SWEEP, STAGE_STAGE1, STAGE_TRIAL = "sweep", "stage1", "trial"
STAGE_REFERENCE = "reference"  # a reference row of a generation sweep (real data, ...)
MAX_PARAM_LENGTH = 6000


def tracking_uri(explicit: str | None = None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            uri = f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
        return uri
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def local_artifact_root(uri: str) -> str | None:
    """Artifacts of a sqlite store live beside the database file; a server decides its own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return None


# MLflow's UI opens an experiment of this kind on its runs (not on the GenAI overview).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
DESCRIPTION_TAG = "mlflow.note.content"


def init_store(uri: str, experiment_name: str, description: str = "") -> str:
    """Create (or migrate) the store and the MLflow experiment, a model-training experiment
    with the experiment file's description; return the experiment id."""
    client = MlflowClient(uri)
    tags = EXPERIMENT_KIND | ({DESCRIPTION_TAG: description} if description else {})
    found = client.get_experiment_by_name(experiment_name)
    if found is None:
        return client.create_experiment(experiment_name, tags=tags,
                                        artifact_location=local_artifact_root(uri))
    for key, value in tags.items():
        if found.tags.get(key) != value:
            client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


def log_dataset(client: MlflowClient, run_id: str, name: str, content_hash: str,
                manifest: str, splits: dict[str, int], resolution: int) -> None:
    """The run's data as an MLflow dataset input (the UI's Dataset column and filter)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    dataset = Dataset(name=name, digest=content_hash[:16], source_type="local",
                      source=json.dumps({"uri": manifest}),
                      profile=json.dumps(splits | {"resolution": resolution}))
    client.log_inputs(run_id, datasets=[DatasetInput(dataset, [
        InputTag("mlflow.data.context", "training")])])


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"stage1": {"f": 4}} -> {"stage1.f": "4"}; values truncated to MLflow's limit."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


def git_commit() -> str:
    """The commit of the harness checkout, with '+dirty' for uncommitted changes."""
    root = Path(harness.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty.strip() else "")


def base_tags(sweep_id: str, stage: str) -> dict[str, str]:
    return {"sweep_id": sweep_id, "stage": stage, "git_commit": git_commit(),
            "harness_version": harness.__version__}


def create_sweep_run(uri: str, experiment_id: str, sweep_id: str, params: dict[str, str],
                     tags: dict[str, str]) -> str:
    client = MlflowClient(uri)
    run = client.create_run(experiment_id, run_name=f"sweep-{sweep_id}",
                            tags=base_tags(sweep_id, STAGE_SWEEP) | tags)
    log_params(client, run.info.run_id, params)
    return run.info.run_id


def log_params(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(key, value) for key, value in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start:start + 100])


def sweep_runs(uri: str, experiment_id: str) -> list[Run]:
    """Parent runs of this experiment, newest first."""
    return MlflowClient(uri).search_runs(
        [experiment_id], filter_string=f"tags.stage = '{STAGE_SWEEP}'",
        order_by=["attributes.start_time DESC"], max_results=1000)


UI_MODE = "?workflowType=machine_learning"  # MLflow 3's UI opens on GenAI pages otherwise


def sweep_pages(uri: str, base_url: str) -> list[tuple[str, str, str]]:
    """(experiment, URL of its runs, URL of its latest sweep run) in the MLflow UI."""
    pages = []
    for experiment in MlflowClient(uri).search_experiments():
        runs = f"{base_url}/#/experiments/{experiment.experiment_id}"
        pages += [(experiment.name, runs + UI_MODE, f"{runs}/runs/{run.info.run_id}{UI_MODE}")
                  for run in sweep_runs(uri, experiment.experiment_id)[:1]]
    return pages


def child_runs(uri: str, experiment_id: str, sweep_id: str, stage: str | None = None
               ) -> list[Run]:
    query = f"tags.sweep_id = '{sweep_id}'"
    query += f" and tags.stage = '{stage}'" if stage else f" and tags.stage != '{STAGE_SWEEP}'"
    return MlflowClient(uri).search_runs([experiment_id], filter_string=query,
                                         max_results=50000)


def mark_stale_runs(uri: str, runs: list[Run], reason: str, status: str = "KILLED") -> int:
    """Runs left RUNNING by a killed driver (KILLED) or a dead worker (FAILED) end with
    `status` and the reason as their `error` tag; returns how many."""
    client = MlflowClient(uri)
    stale = [run for run in runs if run.info.status == "RUNNING"]
    for run in stale:
        client.set_tag(run.info.run_id, "error", reason)
        client.set_terminated(run.info.run_id, status)
    return len(stale)


class TrackedRun:
    """A nested child run used as a context manager inside a trial.

    On an exception the run ends FAILED with the traceback as an artifact and an `error`
    tag; KeyboardInterrupt ends it KILLED. The exception is swallowed (the trial is
    recorded, the sweep goes on) and kept in `self.error`.
    """

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, run_name: str,
                 tags: dict[str, str], params: dict[str, str]) -> None:
        self.client = MlflowClient(uri)
        tags = tags | {MLFLOW_PARENT_RUN_ID: parent_run_id}
        self.run_id = self.client.create_run(experiment_id, run_name=run_name,
                                             tags=tags).info.run_id
        log_params(self.client, self.run_id, params)
        self.error: str | None = None
        self.status = "RUNNING"

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, float(value), now, step)
                                                    for key, value in metrics.items()])

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_grid(self, images: np.ndarray, name: str, artifact_path: str) -> None:
        """uint8 NHWC images as one PNG grid artifact `artifact_path/name`."""
        folder = scratch_dir()
        try:
            save_grid(images, folder / name)
            self.log_artifact(folder / name, artifact_path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> bool:
        if error is None:
            self.status = "FINISHED"
        else:
            self.status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
            self.error = f"{kind.__name__}: {error}"
            self.set_tags({"error": self.error[:5000]})
            self.log_text("".join(traceback.format_exception(kind, error, trace)),
                          "traceback.txt")
        stored = self.client.get_run(self.run_id).info.status
        if stored != "RUNNING":
            # A resuming driver already marked this orphaned run KILLED and re-runs the
            # trial; keeping that status is what stops the trial from being counted twice.
            self.status = stored
        else:
            self.client.set_terminated(self.run_id, self.status)
        return error is not None and not isinstance(error, KeyboardInterrupt)


def scratch_dir() -> Path:
    """A temporary folder for artifacts before they are logged."""
    return Path(tempfile.mkdtemp(prefix="harness-"))
