"""Stage 2 of a trial: train (or reuse) the latent denoiser, then sample and decode.

The stage-2 model is cached like stage 1, by its config, the stage-1 model it was trained
on and the seed, so sampling-only sweeps (DDIM steps, eta) train it once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.cache import ArtifactCache
from harness.config import SampleConfig, Stage2Config, TrialConfig
from harness.diffusion.samplers import DDIMSampler, DDPMSampler, EulerSampler, Sampler, sample
from harness.diffusion.schedules import NoiseSchedule, RectifiedFlow
from harness.errors import ConfigError
from harness.gddcm.model import write_card
from harness.sweep import config_hash
from harness.training import to_model_range, to_uint8
from harness.training_stage2 import build_fftd, latent_scale, train_stage2

log = logging.getLogger(__name__)

STAGE2_CODE_VERSION = "fftd-1"  # bump when stage-2 training changes what it produces
LogFn = Callable[[dict[str, float], int], None]


@dataclass
class Stage2Model:
    denoiser: torch.nn.Module  # the EMA weights
    scale: float  # latents are multiplied by it before diffusion (LDM 4.3.2)
    latent_shape: tuple[int, int, int]
    summary: dict[str, float]
    built: bool
    path: Path | None = None  # the cache entry (weights and gddcm_model.json)


def stage2_cache_key(config: TrialConfig, stage1_key: str) -> str:
    return config_hash({"stage2": config.stage2.model_dump(mode="json"), "stage1": stage1_key,
                        "seed": config.seed, "code": STAGE2_CODE_VERSION})


@torch.inference_mode()
def encode_images(stage1: torch.nn.Module, images: np.ndarray, batch_size: int = 64
                  ) -> torch.Tensor:
    """z = E(x) for uint8 NHWC images; the frozen stage-1 encoder."""
    return torch.cat([stage1.encode(to_model_range(images[i:i + batch_size]))
                      for i in range(0, len(images), batch_size)])


def _diffusion_sampler(config: SampleConfig, stage2: Stage2Config) -> Sampler:
    schedule = NoiseSchedule.create(stage2.beta_schedule, stage2.T)
    if config.sampler == "ddpm":
        return DDPMSampler(schedule, stage2.prediction)
    return DDIMSampler(schedule, config.ddim_steps, config.eta, stage2.prediction)


def _flow_sampler(config: SampleConfig, stage2: Stage2Config) -> Sampler:
    """The deterministic Euler ODE with S = ddim_steps steps (no ancestral variant)."""
    if config.sampler == "ddpm" or config.eta != 0:
        raise ConfigError(None, "sample.sampler", "rectified_flow samples with the Euler ODE: "
                          "use sampler ddim (S = ddim_steps) with eta 0")
    if stage2.prediction == "eps":
        raise ConfigError(None, "stage2.prediction", "rectified_flow with eps prediction has "
                          "no velocity at t = 1 (pure noise); use v or x0")
    return EulerSampler(RectifiedFlow(stage2.T), config.ddim_steps, stage2.prediction)


SAMPLERS: dict[str, Callable[[SampleConfig, Stage2Config], Sampler]] = {
    "ddpm": _diffusion_sampler, "rectified_flow": _flow_sampler}  # by Stage2Config.process


def make_sampler(config: SampleConfig, stage2: Stage2Config) -> Sampler:
    """The sampler of stage2's forward process, set up by the sample section."""
    return SAMPLERS[stage2.process](config, stage2)


@torch.inference_mode()
def generate(stage1: torch.nn.Module, model: Stage2Model, sampler: Sampler, count: int,
             batch_size: int, seed: int) -> np.ndarray:
    """`count` images: z_T ~ N(0, I) -> sampler -> z_0 / scale -> D(z_0) -> uint8 NHWC."""
    generator = torch.Generator().manual_seed(seed)
    images = []
    for start in range(0, count, batch_size):
        n = min(batch_size, count - start)
        z0 = sample(model.denoiser, sampler, (n, *model.latent_shape), generator)
        images.append(to_uint8(stage1.decode(z0 / model.scale)))
    return np.concatenate(images)


def load_stage2(config: TrialConfig, stage1: torch.nn.Module, stage1_key: str,
                train_images: np.ndarray, cache: ArtifactCache, log_metrics: LogFn | None = None,
                periodic_eval: Callable[[int, Stage2Model], None] | None = None) -> Stage2Model:
    """The trained denoiser from the cache, trained on E(train images) first if missing.

    Only a build encodes the whole training set; a cache hit reads the latent scale from
    the entry and takes the latent shape from one image.
    """
    shape = tuple(encode_images(stage1, train_images[:1]).shape[1:])

    def build(folder: Path) -> None:
        latents = encode_images(stage1, train_images)
        scale = latent_scale(latents)
        log.info("training stage 2 (FFTD, %s fusion) on %d latents of shape %s",
                 config.stage2.fusion, len(latents), shape)

        def every(step: int, ema: torch.nn.Module) -> None:
            if periodic_eval is not None:
                periodic_eval(step, Stage2Model(ema, scale, shape, {}, True))

        result = train_stage2(config.stage2, latents * scale, config.seed, log_metrics, every)
        torch.save(result.ema.state_dict(), folder / "ema.pt")
        summary = {"train_seconds": result.seconds, "train_images_per_second":
                   result.images_per_second, "final_train_loss": float(np.mean(
                       result.history[-50:])), "latent_scale": scale,
                   "params": float(sum(p.numel() for p in result.ema.parameters()))}
        (folder / "summary.json").write_text(json.dumps(summary, indent=2))
        # The final entry path, so `harness tokenize encode --model ENTRY` can load it.
        write_card(folder, config.stage2, shape, scale, cache.path("stage1", stage1_key))

    entry = cache.get_or_build("stage2", stage2_cache_key(config, stage1_key), build)
    denoiser = build_fftd(config.stage2, shape[0], shape[-1])
    denoiser.load_state_dict(torch.load(entry.path / "ema.pt", weights_only=True))
    summary = json.loads((entry.path / "summary.json").read_text())
    return Stage2Model(denoiser.eval(), summary["latent_scale"], shape, summary, entry.built,
                       entry.path)
