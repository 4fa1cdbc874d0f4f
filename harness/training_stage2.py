"""Stage-2 training: the FFTD denoiser on frozen stage-1 latents, AdamW with an EMA copy."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from harness.config import Stage2Config
from harness.diffusion.objectives import make_objective
from harness.models.fftd import FFTD

log = logging.getLogger(__name__)

StepHook = Callable[[int, nn.Module], None]


def build_fftd(config: Stage2Config, latent_channels: int, latent_size: int) -> FFTD:
    return FFTD(latent_channels, latent_size, channels=config.channels,
                channel_mult=tuple(config.channel_mult), heads=config.heads,
                attention_resolution=config.attention_resolution, fusion=config.fusion,
                dropout=config.dropout)


def latent_scale(latents: torch.Tensor) -> float:
    """1 / std of the training latents, so the diffusion sees unit-variance data (LDM 4.3.2)."""
    return float(1.0 / latents.float().std().clamp(min=1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """theta_ema <- d theta_ema + (1 - d) theta, with d warmed up as min(decay, (1+n)/(10+n))
    so that a short run is not dominated by the initial weights."""
    d = min(decay, (1 + step) / (10 + step))
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p, 1 - d)


@dataclass
class Stage2Result:
    ema: nn.Module
    seconds: float
    images_per_second: float
    history: list[float] = field(default_factory=list)


def train_stage2(config: Stage2Config, latents: torch.Tensor, seed: int,
                 log_metrics: Callable[[dict[str, float], int], None] | None = None,
                 every: StepHook | None = None, log_every: int = 50) -> Stage2Result:
    """Minimise the weighted diffusion loss on `latents` (already scaled); returns the EMA."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_fftd(config, latents.shape[1], latents.shape[-1])
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    objective = make_objective(config.process, config.beta_schedule, config.T,
                               config.prediction, config.loss_weighting, config.min_snr_gamma)
    history: list[float] = []
    seconds = 0.0
    for step in range(1, config.train_steps + 1):
        start = time.perf_counter()
        model.train()
        batch = latents[torch.randint(0, len(latents), (config.batch_size,),
                                      generator=generator)]
        loss = objective(model, batch, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        update_ema(ema, model, config.ema, step)
        seconds += time.perf_counter() - start
        history.append(loss.item())
        if step % log_every == 0 or step == config.train_steps:
            recent = sum(history[-log_every:]) / len(history[-log_every:])
            log.info("stage2 step %d/%d  loss %.4f", step, config.train_steps, recent)
            if log_metrics:
                log_metrics({"stage2/train_loss": recent}, step)
        if every is not None and config.eval_every and step % config.eval_every == 0:
            every(step, ema)
    return Stage2Result(ema, seconds, config.train_steps * config.batch_size / seconds, history)
