"""Stage 1 of a trial (DESIGN section 3): the autoencoder trained once per distinct config
into the shared cache, its evaluation (reconstruction metrics, latent and codebook facts)
cached beside it, and `load_stage1`, which every trial and stage-1 job goes through.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from harness.cache import ArtifactCache
from harness.config import Stage1Config
from harness.data import Dataset, save_grid
from harness.losses import lpips_weights_sha256
from harness.metrics.evaluate import check_metric_names, evaluate
from harness.metrics.result import mlflow_fields
from harness.metrics.sets import ReferenceKey
from harness.models import build_stage1
from harness.models.base import Stage1Model
from harness.models.ivq_vae import IVQVAE
from harness.models.quantizer import code_statistics
from harness.sweep import config_hash
from harness.tracking import TrackedRun, log_params
from harness.training import reconstruct, to_model_range, train_stage1
from harness.weights import WeightsUnavailable
from harness.weights import resolve as resolve_weights

log = logging.getLogger(__name__)

STAGE1_CODE_VERSION = "stage1-2"  # bump when stage-1 training changes what it produces
STAGE1_EVAL_KEYS = ("eval_images", "eval_metrics")  # settings of the evaluation, not the model
EVAL_BATCH = 32
GRID_IMAGES = 32


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
        # One call: the set metrics share one Inception pass; a metric that cannot run
        # (e.g. LPIPS on images under 32 px) comes back unavailable with its reason.
        fields = mlflow_fields(evaluate(originals, reconstructions, config.eval_metrics, cache,
                                        reference))
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
    check_metric_names(config.eval_metrics, "stage1.eval_metrics")
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
