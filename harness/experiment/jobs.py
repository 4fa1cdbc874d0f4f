"""What a scheduler calls: a trial spec, and the kinds of job a sweep is made of.

A sweep is a two-level DAG (DESIGN section 3): `stage1_job` builds each distinct stage-1
model once into the shared cache (harness.stages.stage1); `trial_job` opens the trial's
MLflow child run and runs the trial (harness.experiment.trial: stage 2, samples, metrics);
`reference_job`, beside the trials of a stage-1 model that generate, measures the
reference rows (harness.stages.references), one MLflow run each. `execute` is the entry
point a worker calls.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from harness.cache import ArtifactCache
from harness.config import TrialConfig
from harness.data import Dataset, load_dataset
from harness.experiment.trial import run_trial
from harness.keys import config_hash, stage1_eval_key, stage1_key
from harness.progress import EVERY_SECONDS, LineFn, Progress
from harness.runtime import Runtime, deterministic_torch, trial_device
from harness.stages.references import reference_rows
from harness.stages.stage1 import load_stage1
from harness.tracking import (
    STAGE_REFERENCE,
    STAGE_STAGE1,
    STAGE_TRIAL,
    TrackedRun,
    base_tags,
    flatten,
    log_dataset,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialSpec:
    """Everything a worker needs, JSON-serialisable, no reliance on the driver's cwd or env."""

    kind: str  # STAGE_STAGE1, STAGE_TRIAL or STAGE_REFERENCE
    trial_id: str
    config: dict[str, Any]
    config_hash: str
    stage1_hash: str
    swept: dict[str, Any]
    dataset_path: str
    cache_dir: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    sweep_id: str
    cpus: float
    run_name: str = ""  # what the MLflow run is called (harness.sweep.run_names); the id if ""
    real_data_row: bool = False  # a reference job that also measures the real-data row
    precision: str = "fp32"  # resources.precision
    compile: bool = False  # resources.compile
    progress_seconds: float = EVERY_SECONDS  # between two progress lines of a stage

    def runtime(self) -> Runtime:
        """The worker's device (what Ray gave it) and the experiment's precision."""
        return Runtime(trial_device(), self.precision, self.compile)

    def progress(self, run: TrackedRun, report: LineFn | None) -> Progress:
        return Progress(self.run_name or self.trial_id, run.log_metrics, report,
                        self.progress_seconds)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def tags(self) -> dict[str, str]:
        return base_tags(self.sweep_id, self.kind) | {
            "trial_id": self.trial_id, "config_hash": self.config_hash,
            "stage1_hash": self.stage1_hash, "dataset": self.config["dataset"],
            "swept": json.dumps(self.swept, sort_keys=True)} | {
            f"swept.{key}": str(value) for key, value in self.swept.items()}

    def log_dataset(self, run: TrackedRun, dataset: Dataset) -> None:
        run.set_tags({"dataset_hash": dataset.content_hash})
        log_dataset(run.client, run.run_id, dataset.name, dataset.content_hash,
                    self.dataset_path, {"train": len(dataset.train), "eval": len(dataset.eval)},
                    dataset.resolution)

    def open_run(self, params: dict[str, Any]) -> TrackedRun:
        return TrackedRun(self.tracking_uri, self.experiment_id, self.parent_run_id,
                          self.run_name or self.trial_id, self.tags(), flatten(params))


def stage1_job(spec: TrialSpec, report: LineFn | None = None) -> dict[str, Any]:
    """Phase 1: make sure the stage-1 model and its evaluation exist; log a run only when one
    of them is made here (train time, images/s, reconstruction metrics, codebook, latent)."""
    config = TrialConfig.model_validate(spec.config)
    cache = ArtifactCache(Path(spec.cache_dir))
    runtime = spec.runtime()
    with contextlib.suppress(Exception):  # an error here is raised again inside the run
        data_hash = load_dataset(spec.dataset_path, cache.root).content_hash
        numerics = runtime.numerics()
        if (cache.lookup("stage1", stage1_key(config.stage1, data_hash, numerics)) is not None
                and cache.lookup("stage1-eval", stage1_eval_key(config.stage1, data_hash,
                                                                numerics)) is not None):
            return {"status": "FINISHED", "cache_hit": True}
    built = False  # stays so when loading raises (the run records the error)
    with spec.open_run({"stage1": config.stage1.model_dump(mode="json"),
                        "dataset": config.dataset}) as run:
        dataset = load_dataset(spec.dataset_path, cache.root)  # missing or corrupt: fails here
        spec.log_dataset(run, dataset)
        run.set_tags(runtime.tags())
        _, summary, built = load_stage1(config.stage1, dataset, cache, run, runtime,
                                        spec.progress(run, report))
        run.log_metrics({"stage1/" + key: value for key, value in summary.items()})
        run.log_metrics({"stage1/cache_hit": float(not built)})
    return {"status": run.status, "error": run.error, "cache_hit": not built,
            "run_id": run.run_id}


def trial_job(spec: TrialSpec, report: LineFn | None = None) -> dict[str, Any]:
    """Phase 2: one trial of the sweep (harness.experiment.trial), recorded as one child run."""
    config = TrialConfig.model_validate(spec.config)
    with spec.open_run(config.model_dump(mode="json")) as run:
        run.log_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
                     "config.yaml")
        dataset = load_dataset(spec.dataset_path, spec.cache_dir)
        spec.log_dataset(run, dataset)
        torch.manual_seed(config.seed)
        metrics = run_trial(config, dataset, ArtifactCache(Path(spec.cache_dir)), run,
                            spec.runtime(), spec.progress(run, report))
    return {"status": run.status, "error": run.error, "run_id": run.run_id,
            "metrics": metrics if run.status == "FINISHED" else {}}


def reference_job(spec: TrialSpec, report: LineFn | None = None) -> dict[str, Any]:
    """The reference rows of one stage-1 model's trials (the real-data row only when the
    spec's `swept` says so), each its own run named after the row; a row that fails is a
    FAILED run, the others are still measured. Returns `<row>/<metric>` values."""
    config = TrialConfig.model_validate(spec.config)
    try:
        dataset = load_dataset(spec.dataset_path, spec.cache_dir)
        rows = reference_rows(config, dataset, ArtifactCache(Path(spec.cache_dir)),
                              with_real_data=spec.real_data_row, runtime=spec.runtime())
    except Exception as error:  # recorded as the job's outcome; the trials go on
        return {"status": "FAILED", "error": f"{type(error).__name__}: {error}"}
    metrics: dict[str, float] = {}
    errors = []
    for row in rows:
        tags = spec.tags() | {"reference_row": row.key, "config_hash": config_hash(
            {"row": row.key, "stage1": spec.stage1_hash}), "mlflow.note.content": row.description}
        name = row.label + (f" ({spec.run_name})" if row.key != "real_data" else "")
        with TrackedRun(spec.tracking_uri, spec.experiment_id, spec.parent_run_id, name, tags,
                        flatten({"eval": config.eval.model_dump(mode="json"),
                                 "sample": config.sample.model_dump(mode="json")})) as run:
            spec.log_dataset(run, dataset)
            values, value_tags = row.measure()
            run.set_tags(value_tags)
            run.log_metrics(values)
            metrics |= {f"{row.key}/{key}": value for key, value in values.items()}
        if run.error:
            errors.append(f"{row.label}: {run.error}")
    return {"status": "FAILED" if errors else "FINISHED", "error": "; ".join(errors) or None,
            "metrics": metrics}


def execute(spec_dict: dict[str, Any], report: LineFn | None = None) -> dict[str, Any]:
    """Entry point a worker calls: torch threads = the trial's CPUs, deterministic kernels;
    `report` takes the trial's progress lines to the driver."""
    spec = TrialSpec(**spec_dict)
    deterministic_torch(max(1, int(spec.cpus)))
    runners = {STAGE_STAGE1: stage1_job, STAGE_TRIAL: trial_job,
               STAGE_REFERENCE: reference_job}
    return runners[spec.kind](spec, report)
