"""Generation: samples drawn from a trained stage 2 and decoded through stage 1, timed, and
their set metrics against the reference images; also the periodic evaluation of training.

A conditional model draws its samples class-balanced (sample i has label i mod C, so every
class gets N / C of them) through classifier-free guidance at `sample.guidance_scale`
(harness.diffusion.guidance), and the metrics know each sample's label (per-class KID).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import nn

from harness.cache import ArtifactCache
from harness.config import SampleConfig, TrialConfig
from harness.data.tensors import to_uint8
from harness.diffusion.guidance import Guided, evaluations_per_step
from harness.diffusion.processes import process_of
from harness.diffusion.samplers import Sampler, make_sampler, sample, sampler_within_nfe
from harness.metrics.evaluate import evaluate
from harness.metrics.result import mlflow_fields
from harness.metrics.sets import ReferenceKey, SetLabels
from harness.progress import Progress
from harness.runtime import Runtime, peak_memory_mb, reset_peak_memory
from harness.stages.stage2 import EvalHook, Stage2Model
from harness.tracking import TrackedRun

log = logging.getLogger(__name__)

GRID_IMAGES = 64
PERIODIC_METRICS = ("kid", "fid")  # during training: KID carries small N, FID where N allows


def sampler_for(config: SampleConfig, model: Stage2Model) -> Sampler:
    """The sample section's sampler on the process the model was trained with: S steps
    (`ddim_steps`), or the most that stay within `nfe` function evaluations."""
    process, prediction = process_of(model.config), model.config.prediction
    if config.nfe is not None:
        return sampler_within_nfe(config.sampler, process, prediction, config.nfe, config.eta,
                                  config.timestep_spacing)
    return make_sampler(config.sampler, process, prediction, config.ddim_steps, config.eta,
                        config.timestep_spacing)


def balanced_labels(count: int, num_classes: int) -> np.ndarray:
    """Labels 0, 1, ..., C-1, 0, 1, ...: every class gets count // C samples (the first
    count mod C classes one more)."""
    return np.arange(count) % num_classes


def sampled_set_labels(reference_labels: np.ndarray, count: int, classes: tuple[str, ...]
                       ) -> SetLabels:
    """The labels the metrics see for `count` class-balanced samples against the reference."""
    return SetLabels(np.asarray(reference_labels), balanced_labels(count, len(classes)),
                     classes)


def guidance_scale(config: SampleConfig) -> float:
    """The sample section's s; 1 (plain conditional sampling) when unset."""
    return 1.0 if config.guidance_scale is None else config.guidance_scale


@torch.inference_mode()
def generate(stage1: nn.Module, model: Stage2Model, sampler: Sampler, count: int,
             batch_size: int, seed: int, runtime: Runtime = Runtime(),
             progress: Progress | None = None, guidance: float = 1.0) -> np.ndarray:
    """`count` images: z_T ~ N(0, I) -> sampler -> z_0 / scale -> D(z_0) -> uint8 NHWC, on the
    runtime's device; the noise comes from a CPU generator, the same on every device. A
    conditional model samples `balanced_labels` with classifier-free guidance scale
    `guidance`."""
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.from_numpy(balanced_labels(count, len(model.classes)))
              if model.classes else None)
    images = []
    if progress is not None:
        progress.start("sample", count)
    for start in range(0, count, batch_size):
        n = min(batch_size, count - start)
        denoiser = model.denoiser
        if labels is not None:
            denoiser = Guided(denoiser, labels[start:start + n].to(runtime.device), guidance)
        with runtime.autocast():
            z0 = sample(denoiser, sampler, (n, *model.latent_shape), generator,
                        device=runtime.device)
            decoded = stage1.decode(z0.float() / model.scale)
        images.append(to_uint8(decoded.float()))
        if progress is not None:
            progress.advance(start + n)
    if progress is not None:
        progress.finish()
    return np.concatenate(images)


def sample_and_evaluate(config: TrialConfig, stage1: nn.Module, model: Stage2Model,
                        reference: np.ndarray, reference_key: ReferenceKey,
                        cache: ArtifactCache, run: TrackedRun, runtime: Runtime = Runtime(),
                        progress: Progress | None = None,
                        reference_labels: np.ndarray | None = None) -> dict[str, float]:
    """num_samples images through the sampler and the decoder, timed, then their metrics;
    a metric that cannot run is a tag with its reason, never a number. A conditional model's
    samples carry their labels to the metrics, with the reference images' `reference_labels`.
    """
    count = config.sample.num_samples
    sampler = sampler_for(config.sample, model)
    scale = guidance_scale(config.sample)
    reset_peak_memory(runtime.device)
    start = time.perf_counter()
    samples = generate(stage1, model, sampler, count, config.sample.batch_size, config.seed,
                       runtime, progress, scale)
    seconds = time.perf_counter() - start
    evaluations = evaluations_per_step(scale) if model.classes else 1
    metrics = {"sample/num_images": float(count),
               "sample/nfe": float(sampler.nfe * evaluations),
               "sample/steps": float(sampler.steps), "sample/seconds": seconds,
               "sample/images_per_second": count / seconds}
    if model.classes:
        metrics["sample/guidance_scale"] = scale
    if (peak := peak_memory_mb(runtime.device)) is not None:
        metrics["sample/peak_memory_mb"] = peak
    run.log_grid(samples[:GRID_IMAGES], "samples.png", "images")
    labels = None
    if model.classes and reference_labels is not None:
        labels = sampled_set_labels(reference_labels, count, model.classes)
    if config.eval.metrics:
        fields = mlflow_fields(evaluate(reference, samples, config.eval.metrics, cache,
                                        reference_key, bootstrap=config.eval.bootstrap,
                                        device=runtime.device, labels=labels))
        run.set_tags(fields.tags)
        metrics |= fields.metrics
    return metrics


def periodic_evaluation(config: TrialConfig, stage1: nn.Module, reference: np.ndarray,
                        reference_key: ReferenceKey, cache: ArtifactCache, run: TrackedRun,
                        runtime: Runtime = Runtime()) -> EvalHook:
    """KID / FID of stage2.eval_num_samples samples at a training step, as metric histories
    (`train_eval/kid` by step)."""
    def evaluate_at(step: int, model: Stage2Model) -> None:
        samples = generate(stage1, model, sampler_for(config.sample, model),
                           config.stage2.eval_num_samples, config.sample.batch_size,
                           config.seed, runtime, guidance=guidance_scale(config.sample))
        fields = mlflow_fields(evaluate(reference, samples, list(PERIODIC_METRICS), cache,
                                        reference_key, bootstrap=0, device=runtime.device),
                               prefix="train_eval/")
        run.log_metrics(fields.metrics, step)
        log.info("stage2 step %d: %s", step, ", ".join(
            f"{name} {value:.4g}" for name, value in fields.metrics.items()))
    return evaluate_at
