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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from harness.cache import ArtifactCache
from harness.config import Stage1Config, TrialConfig
from harness.data import Dataset, load_dataset, save_grid
from harness.errors import ConfigError
from harness.losses import lpips_weights_sha256
from harness.metrics import PAIRWISE, get_pairwise
from harness.metrics.evaluate import evaluate
from harness.metrics.result import mlflow_fields, unavailable
from harness.metrics.sets import SET_METRICS, ReferenceKey
from harness.models import build_stage1
from harness.models.base import Stage1Model
from harness.models.ivq_vae import IVQVAE
from harness.models.quantizer import code_statistics
from harness.sweep import config_hash
from harness.tracking import (
    STAGE_STAGE1,
    STAGE_TRIAL,
    TrackedRun,
    base_tags,
    flatten,
    log_params,
    scratch_dir,
)
from harness.training import reconstruct, to_model_range, train_stage1
from harness.weights import WeightsUnavailable
from harness.weights import resolve as resolve_weights

log = logging.getLogger(__name__)

STAGE1_CODE_VERSION = "stage1-2"  # bump when stage-1 training changes what it produces
STAGE1_EVAL_KEYS = ("eval_images", "eval_metrics")  # settings of the evaluation, not the model
EVAL_BATCH = 32
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
    """What a stage-1 model depends on: its config (less the evaluation keys), the data's
    content, the code, and the LPIPS weights its perceptual loss trains with (or none)."""
    lpips = lpips_weights_sha256() if config.perceptual_weight > 0 else None
    return config_hash({"stage1": config.model_dump(mode="json", exclude=set(STAGE1_EVAL_KEYS)),
                        "data": dataset.content_hash, "code": STAGE1_CODE_VERSION,
                        "lpips": lpips})


def stage1_eval_key(config: Stage1Config, dataset: Dataset) -> str:
    """What a stage-1 evaluation depends on: the model, its settings, the metric weights."""
    weights = {}
    for network in ("lpips-alex", "inception-pool3"):
        try:
            weights[network] = resolve_weights(network).sha256
        except WeightsUnavailable:
            weights[network] = None
    return config_hash({"model": stage1_cache_key(config, dataset), "weights": weights,
                        "eval": {key: getattr(config, key) for key in STAGE1_EVAL_KEYS}})


def _build_stage1(config: Stage1Config, dataset: Dataset, run: TrackedRun | None
                  ) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        log.info("training stage 1 (%s, f=%d) on %d images", config.kind, config.f,
                 len(dataset.train))
        result = train_stage1(config, dataset.train,
                              run.log_metrics if run is not None else None)
        torch.save(result.model.state_dict(), folder / "model.pt")
        summary = {"train_seconds": result.seconds,
                   "train_images_per_second": result.images_per_second,
                   "final_train_loss": result.final_loss,
                   "params": float(result.model.parameter_count()),
                   "perceptual_loss": float(result.perceptual_disabled is None)}
        summary |= {f"final_train_{name}": value for name, value in result.final_logs.items()
                    if name != "loss"}
        tags = ({"perceptual_loss.disabled": result.perceptual_disabled}
                if result.perceptual_disabled else
                {"perceptual_loss.weights_sha256": str(result.perceptual_sha256)})
        (folder / "summary.json").write_text(json.dumps(summary, indent=2))
        (folder / "tags.json").write_text(json.dumps(tags, indent=2))
        (folder / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return build


def _check_eval_metrics(config: Stage1Config) -> None:
    known = {*PAIRWISE, *SET_METRICS}
    unknown = [name for name in config.eval_metrics if name not in known]
    if unknown:
        raise ConfigError(None, "stage1.eval_metrics", f"unknown metric(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")


@torch.inference_mode()
def latent_statistics(model: Stage1Model, images: np.ndarray, batch_size: int
                      ) -> dict[str, float]:
    """Latent shape (h, w, c) and std of E(x); codebook usage and perplexity for a VQ model."""
    latents, codes = [], []
    for start in range(0, len(images), batch_size):
        x = to_model_range(images[start:start + batch_size])
        latents.append(model.encode(x))
        if isinstance(model, IVQVAE):
            codes.append(model.code_indices(x))
    z = torch.cat(latents)
    stats = {"latent_h": z.shape[2], "latent_w": z.shape[3], "latent_c": z.shape[1],
             "latent_std": z.std().item()}
    if codes:
        perplexity, usage = code_statistics(torch.cat(codes), model.quantizer.K)
        stats |= {"codebook_perplexity": perplexity.item(), "codebook_usage": usage.item(),
                  "codebook_restarts": model.quantizer.restarts.item()}
    return {name: float(value) for name, value in stats.items()}


def _evaluate_stage1(model: Stage1Model, config: Stage1Config, dataset: Dataset,
                     cache: ArtifactCache) -> Callable[[Path], None]:
    """Reconstruct the first eval_images of the eval split; the metrics of DESIGN section 6
    (a metric that cannot run is recorded unavailable with its reason) and latent facts."""
    def build(folder: Path) -> None:
        count = min(config.eval_images, len(dataset.eval))
        originals = dataset.eval[:count]
        torch.manual_seed(config.seed)
        start = time.perf_counter()
        reconstructions = reconstruct(model, originals, EVAL_BATCH)
        seconds = time.perf_counter() - start
        reference = ReferenceKey(dataset.content_hash, "eval", count)
        results = []
        for name in config.eval_metrics:
            try:
                results += evaluate(originals, reconstructions, [name], cache, reference)
            except (RuntimeError, ValueError) as error:  # e.g. LPIPS on images under 32 px
                log.warning("stage-1 %s unavailable: %s", name, error)
                results.append(unavailable(name, f"{type(error).__name__}: {error}", count))
        fields = mlflow_fields(results)
        metrics = fields.metrics | latent_statistics(model, originals, EVAL_BATCH)
        metrics |= {"eval_images": float(count), "eval_images_per_second": count / seconds}
        (folder / "evaluation.json").write_text(json.dumps(
            {"metrics": metrics, "params": fields.params, "tags": fields.tags}, indent=2))
        pairs = np.stack([originals[:GRID_IMAGES // 2], reconstructions[:GRID_IMAGES // 2]], 1)
        save_grid(pairs.reshape(-1, *originals.shape[1:]), folder / "reconstructions.png")
    return build


def load_stage1(config: Stage1Config, dataset: Dataset, cache: ArtifactCache,
                run: TrackedRun | None = None) -> tuple[Stage1Model, dict[str, Any], bool]:
    """The stage-1 model for `config` from the cache, trained first if it is not there.

    The summary holds the training facts and the stage-1 evaluation (both cached with the
    model) as flat floats; `run`, when given, also gets their tags and params, all under the
    `stage1/` prefix. `built` says whether this call trained the model.
    """
    config.check_resolution(dataset.resolution, dataset.manifest_path)
    _check_eval_metrics(config)
    entry = cache.get_or_build("stage1", stage1_cache_key(config, dataset),
                               _build_stage1(config, dataset, run))
    model = build_stage1(config)
    model.load_state_dict(torch.load(entry.path / "model.pt", weights_only=True))
    model.eval()
    evaluation = cache.get_or_build("stage1-eval", stage1_eval_key(config, dataset),
                                    _evaluate_stage1(model, config, dataset, cache))
    fields = json.loads((evaluation.path / "evaluation.json").read_text())
    summary = json.loads((entry.path / "summary.json").read_text()) | fields["metrics"]
    if run is not None:
        tags = json.loads((entry.path / "tags.json").read_text()) | fields["tags"]
        run.set_tags({f"stage1/{key}": value for key, value in tags.items()})
        log_params(run.client, run.run_id, {f"stage1/{key}": value
                                            for key, value in fields["params"].items()})
        if evaluation.built:
            run.log_artifact(evaluation.path / "reconstructions.png", "stage1")
    return model, summary, entry.built


def run_stage1_job(spec: TrialSpec) -> dict[str, Any]:
    """Phase 1: make sure the stage-1 model and its evaluation exist; log a run only when one
    of them is made here (train time, images/s, reconstruction metrics, codebook, latent)."""
    config = TrialConfig.model_validate(spec.config)
    dataset = load_dataset(spec.dataset_path)
    cache = ArtifactCache(Path(spec.cache_dir))
    if (cache.lookup("stage1", stage1_cache_key(config.stage1, dataset)) is not None
            and cache.lookup("stage1-eval", stage1_eval_key(config.stage1, dataset)) is not None):
        return {"status": "FINISHED", "cache_hit": True}
    with spec.open_run({"stage1": config.stage1.model_dump(mode="json"),
                        "dataset": config.dataset}) as run:
        run.set_tags({"dataset_hash": dataset.content_hash})
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
