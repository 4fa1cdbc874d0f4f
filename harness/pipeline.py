"""The pipeline of one trial (DESIGN section 3), as plain functions a scheduler can call.

A sweep is a two-level DAG: `run_stage1_job` builds each distinct stage-1 model once into
the shared cache; `run_trial` takes its stage-1 model from there and does the per-trial
work. Until the stage-2 model lands, a trial evaluates reconstructions of the eval split
through its stage-1 model (PSNR, SSIM, L1) and logs a reconstruction grid.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from harness.cache import ArtifactCache
from harness.config import Stage1Config, TrialConfig
from harness.data import Dataset, load_dataset, save_grid
from harness.metrics import get_pairwise
from harness.models import build_stage1
from harness.sweep import config_hash
from harness.tracking import STAGE_STAGE1, STAGE_TRIAL, TrackedRun, base_tags, flatten, scratch_dir
from harness.training import reconstruct, train_stage1

log = logging.getLogger(__name__)

STAGE1_CODE_VERSION = "conv_ae-1"  # bump when stage-1 training changes what it produces
GRID_IMAGES = 32


@dataclass(frozen=True)
class TrialSpec:
    """Everything a worker needs, JSON-serialisable, no reliance on the driver's cwd or env."""

    kind: str  # STAGE_STAGE1 or STAGE_TRIAL
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def tags(self) -> dict[str, str]:
        return base_tags(self.sweep_id, self.kind) | {
            "trial_id": self.trial_id, "config_hash": self.config_hash,
            "stage1_hash": self.stage1_hash, "dataset": self.config["dataset"],
            "swept": json.dumps(self.swept, sort_keys=True)}

    def open_run(self, params: dict[str, Any]) -> TrackedRun:
        return TrackedRun(self.tracking_uri, self.experiment_id, self.parent_run_id,
                          self.trial_id, self.tags(), flatten(params))


def stage1_cache_key(config: Stage1Config, dataset: Dataset) -> str:
    """What a stage-1 model depends on: its config, the data's content and the code."""
    return config_hash({"stage1": config.model_dump(mode="json"), "data": dataset.content_hash,
                        "code": STAGE1_CODE_VERSION})


def _build_stage1(config: Stage1Config, dataset: Dataset, run: TrackedRun | None
                  ) -> Any:
    def build(folder: Path) -> None:
        log.info("training stage 1 (%s, f=%d) on %d images", config.kind, config.f,
                 len(dataset.train))
        result = train_stage1(config, dataset.train,
                              run.log_metrics if run is not None else None)
        torch.save(result.model.state_dict(), folder / "model.pt")
        summary = {"train_seconds": result.seconds, "train_images_per_second":
                   result.images_per_second, "final_train_l1": result.final_loss,
                   "params": sum(p.numel() for p in result.model.parameters())}
        (folder / "summary.json").write_text(json.dumps(summary, indent=2))
        (folder / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return build


def load_stage1(config: Stage1Config, dataset: Dataset, cache: ArtifactCache,
                run: TrackedRun | None = None) -> tuple[torch.nn.Module, dict[str, Any], bool]:
    """The stage-1 model for `config` from the cache, trained first if it is not there."""
    entry = cache.get_or_build("stage1", stage1_cache_key(config, dataset),
                               _build_stage1(config, dataset, run))
    model = build_stage1(config)
    model.load_state_dict(torch.load(entry.path / "model.pt", weights_only=True))
    model.eval()
    summary = json.loads((entry.path / "summary.json").read_text())
    return model, summary, entry.built


def run_stage1_job(spec: TrialSpec) -> dict[str, Any]:
    """Phase 1: make sure the stage-1 model exists; log a run only when it is trained here."""
    config = TrialConfig.model_validate(spec.config)
    dataset = load_dataset(spec.dataset_path)
    cache = ArtifactCache(Path(spec.cache_dir))
    if cache.lookup("stage1", stage1_cache_key(config.stage1, dataset)) is not None:
        return {"status": "FINISHED", "cache_hit": True}
    with spec.open_run({"stage1": config.stage1.model_dump(mode="json"),
                        "dataset": config.dataset}) as run:
        _, summary, built = load_stage1(config.stage1, dataset, cache, run)
        run.log_metrics({"stage1/" + key: value for key, value in summary.items()})
        run.log_metrics({"stage1/cache_hit": float(not built)})
    return {"status": run.status, "error": run.error, "cache_hit": not built,
            "run_id": run.run_id}


def run_trial(spec: TrialSpec) -> dict[str, Any]:
    """Phase 2: one trial of the sweep, recorded as one child run."""
    config = TrialConfig.model_validate(spec.config)
    with spec.open_run(config.model_dump(mode="json")) as run:
        run.log_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
                     "config.yaml")
        metrics = _evaluate_reconstructions(config, spec, run)
    return {"status": run.status, "error": run.error, "run_id": run.run_id,
            "metrics": metrics if run.status == "FINISHED" else {}}


def _evaluate_reconstructions(config: TrialConfig, spec: TrialSpec, run: TrackedRun
                              ) -> dict[str, float]:
    dataset = load_dataset(spec.dataset_path)
    run.set_tags({"dataset_hash": dataset.content_hash,
                  "pipeline": "stage1-reconstruction (stage 2 not implemented yet)"})
    model, summary, built = load_stage1(config.stage1, dataset, ArtifactCache(
        Path(spec.cache_dir)), run)
    run.log_metrics({"stage1/cache_hit": float(not built)} |
                    {"stage1/" + key: value for key, value in summary.items()})
    count = config.eval.num_images
    if count > len(dataset.eval):
        raise ValueError(f"eval.num_images={count} but the eval split of {dataset.name} has "
                         f"only {len(dataset.eval)} images")
    torch.manual_seed(config.seed)
    originals = dataset.eval[:count]
    start = time.perf_counter()
    reconstructions = reconstruct(model, originals, config.eval.batch_size)
    seconds = time.perf_counter() - start
    metrics = {f"recon/{name}": get_pairwise(name).fn(originals, reconstructions)
               for name in config.eval.metrics}
    metrics |= {"recon/num_images": float(count), "recon/images_per_second": count / seconds}
    run.log_metrics(metrics)
    folder = scratch_dir()
    try:
        pairs = np.stack([originals[:GRID_IMAGES // 2], reconstructions[:GRID_IMAGES // 2]], 1)
        save_grid(pairs.reshape(-1, *originals.shape[1:]), folder / "reconstructions.png")
        run.log_artifact(folder / "reconstructions.png", "images")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return metrics


def execute(spec_dict: dict[str, Any]) -> dict[str, Any]:
    """Entry point a worker calls: pins torch threads to the trial's CPUs, runs the spec."""
    spec = TrialSpec(**spec_dict)
    torch.set_num_threads(max(1, int(spec.cpus)))
    runner = run_stage1_job if spec.kind == STAGE_STAGE1 else run_trial
    assert spec.kind in (STAGE_STAGE1, STAGE_TRIAL), spec.kind
    return runner(spec)
