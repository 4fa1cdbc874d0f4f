"""One trial of a sweep (DESIGN section 3): stage 1 from the cache, stage 2 trained or reused,
samples drawn and decoded, their set metrics against the eval split, all logged to its run.
A trial with a `gddcm` section tokenizes the eval images instead (harness.tokenize_trial).

Stage-1 and stage-2 models come from the shared cache, so arms that differ only in how they
sample (DDIM steps, eta) train nothing. The real eval split's Inception features are cached
by (dataset hash, split, N), so every trial of every sweep on that data reuses them.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np

from harness.cache import ArtifactCache
from harness.config import TrialConfig
from harness.data import Dataset, save_grid
from harness.diffusion.samplers import Sampler
from harness.gddcm.config import check_trial as check_gddcm
from harness.generation import Stage2Model, generate, load_stage2, make_sampler
from harness.metrics.evaluate import check_metric_names, evaluate
from harness.metrics.result import mlflow_fields
from harness.metrics.sets import ReferenceKey
from harness.models.base import Stage1Model
from harness.stage1 import load_stage1, stage1_cache_key
from harness.tokenize_trial import tokenize_and_evaluate
from harness.tracking import TrackedRun, log_params, scratch_dir

log = logging.getLogger(__name__)

GRID_IMAGES = 64
PERIODIC_METRICS = ("kid", "fid")  # during training: KID carries small N, FID where N allows


def check_trial_config(config: TrialConfig, file: str | Path | None = None) -> None:
    """What pydantic cannot check without the metric registry: the metric names."""
    check_metric_names(config.stage1.eval_metrics, "stage1.eval_metrics", file)
    check_metric_names(config.eval.metrics, "eval.metrics", file, sets_only=True)


def reference_split(config: TrialConfig, dataset: Dataset) -> tuple[np.ndarray, ReferenceKey]:
    """The first eval.num_images images of the eval split, and their cache key."""
    count = config.eval.num_images
    if count > len(dataset.eval):
        raise ValueError(f"eval.num_images={count} but the eval split of {dataset.name} has "
                         f"only {len(dataset.eval)} images")
    return dataset.eval[:count], ReferenceKey(dataset.content_hash, "eval", count)


def run_trial_pipeline(config: TrialConfig, dataset: Dataset, cache: ArtifactCache,
                       run: TrackedRun) -> dict[str, float]:
    """Stage 1 -> stage 2 -> samples and their set metrics (or, with `gddcm`, tokenized eval
    images and their reconstruction metrics); returns the metrics it logged."""
    check_trial_config(config)
    check_gddcm(config, dataset.resolution)
    stage1, stage1_summary, stage1_built = load_stage1(config.stage1, dataset, cache, run)
    run.log_metrics({"stage1/cache_hit": float(not stage1_built)} |
                    {"stage1/" + key: value for key, value in stage1_summary.items()})
    reference, reference_key = reference_split(config, dataset)
    sampler = make_sampler(config.sample, config.stage2)

    def periodic_eval(step: int, model: Stage2Model) -> None:
        """KID / FID of eval_num_samples samples at a training step, as a metric history."""
        samples = generate(stage1, model, sampler, config.stage2.eval_num_samples,
                           config.sample.batch_size, config.seed)
        fields = mlflow_fields(evaluate(reference, samples, list(PERIODIC_METRICS), cache,
                                        reference_key), prefix="train_eval/")
        run.log_metrics(fields.metrics, step)
        log.info("stage2 step %d: %s", step, ", ".join(
            f"{name} {value:.4g}" for name, value in fields.metrics.items()))

    stage2 = load_stage2(config, stage1, stage1_cache_key(config.stage1, dataset),
                         dataset.train, cache, run.log_metrics,
                         periodic_eval if config.stage2.eval_every else None)
    metrics = {"stage2/cache_hit": float(not stage2.built)} | {
        "stage2/" + key: value for key, value in stage2.summary.items()}
    if config.gddcm is not None:  # a tokenizer trial: reconstruct the eval images, no samples
        metrics |= tokenize_and_evaluate(config, stage1, stage2, dataset.train, reference,
                                         reference_key, cache, run)
    else:
        metrics |= sample_and_evaluate(config, stage1, stage2, sampler, reference,
                                       reference_key, cache, run)
    run.log_metrics(metrics)
    return metrics


def sample_and_evaluate(config: TrialConfig, stage1: Stage1Model, stage2: Stage2Model,
                        sampler: Sampler, reference: np.ndarray, reference_key: ReferenceKey,
                        cache: ArtifactCache, run: TrackedRun) -> dict[str, float]:
    """num_samples images through the sampler and the decoder, timed, then their metrics;
    a metric that cannot run is a tag with its reason, never a number."""
    count = config.sample.num_samples
    start = time.perf_counter()
    samples = generate(stage1, stage2, sampler, count, config.sample.batch_size, config.seed)
    seconds = time.perf_counter() - start
    metrics = {"sample/num_images": float(count), "sample/seconds": seconds,
               "sample/images_per_second": count / seconds}
    _log_grid(samples[:GRID_IMAGES], run)
    if config.eval.metrics:
        fields = mlflow_fields(evaluate(reference, samples, config.eval.metrics, cache,
                                        reference_key))
        run.set_tags(fields.tags)
        log_params(run.client, run.run_id, fields.params)
        metrics |= fields.metrics
    return metrics


def _log_grid(images: np.ndarray, run: TrackedRun) -> None:
    folder: Path = scratch_dir()
    try:
        save_grid(images, folder / "samples.png")
        run.log_artifact(folder / "samples.png", "images")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
