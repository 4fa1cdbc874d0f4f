"""Training loops. Stage 1: the autoencoder on pixels with seeded batches (seed 000 section 2.1)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from harness.config import Stage1Config
from harness.losses import adaptive_weight, generator_loss, hinge_d_loss, perceptual_term
from harness.models import build_stage1
from harness.models.base import Stage1Model, Stage1Output
from harness.models.discriminator import PatchDiscriminator

log = logging.getLogger(__name__)

LogFn = Callable[[dict[str, float], int], None]
ADAM_BETAS = (0.5, 0.9)  # VQGAN / LDM autoencoder training


def to_model_range(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1]."""
    return torch.tensor(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float NCHW in [-1, 1] -> uint8 NHWC, rounded the way real images are stored."""
    pixels = images.detach().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class TrainResult:
    model: nn.Module
    seconds: float
    images_per_second: float
    final_loss: float
    history: list[float] = field(default_factory=list)  # total autoencoder loss per step
    final_logs: dict[str, float] = field(default_factory=dict)  # last window's mean terms
    perceptual_disabled: str | None = None  # why the LPIPS term was off, if it was
    perceptual_sha256: str | None = None
    step_seconds: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class SpeedLevers:
    """How a step runs, not what it computes. benchmarks/stage1_throughput.py on 2 CPU cores:
    channels_last 0-20% more images/s (oneDNN skips its layout reorders); torch.compile +20%
    before the GAN starts but -25% after it (the adaptive weight's double backward), plus
    5-20 s of compilation, so it is off by default."""

    channels_last: bool = True
    compile: bool = False


@dataclass
class _Adversary:
    """The patch discriminator and its optimizer, active after `start` steps."""

    discriminator: PatchDiscriminator
    optimizer: torch.optim.Optimizer
    start: int


def stage1_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train_stage1(config: Stage1Config, images: np.ndarray, log_metrics: LogFn | None = None,
                 log_every: int = 50, levers: SpeedLevers = SpeedLevers()) -> TrainResult:
    """Fit the stage-1 autoencoder to `images` (uint8 NHWC) with Adam (seed 000 section 2.1):

        L = |x - x~|_1 + w_p LPIPS(x~, x) + lambda w_adv L_GAN + (beta L_commit | w_kl KL),

    L_GAN the hinge generator loss of a patch discriminator that starts training after
    `adversarial_start` steps, lambda VQGAN's adaptive weight (Eq. 7). Batches are seeded.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = stage1_device()
    memory_format = torch.channels_last if levers.channels_last else torch.contiguous_format
    model = build_stage1(config).to(device, memory_format=memory_format)
    if not any(p.requires_grad for p in model.parameters()):  # the identity: nothing to fit
        log.info("stage 1 (%s) has no parameters; nothing to train", config.kind)
        return TrainResult(model.eval(), 0.0, 0.0, 0.0)  # its reconstruction L1 is exactly 0
    autoencode = model.autoencode
    if levers.compile:
        # The adaptive GAN weight differentiates the graph twice (retain_graph), which
        # AOTAutograd's donated buffers do not allow.
        from torch._functorch import config as functorch_config

        functorch_config.donated_buffer = False
        autoencode = torch.compile(model.autoencode)
    perceptual = perceptual_term(config.perceptual_weight)
    if perceptual.loss is not None:
        perceptual.loss.to(device, memory_format=memory_format)
    adversary = None
    if config.adversarial_weight > 0 and config.adversarial_start < config.train_steps:
        discriminator = PatchDiscriminator(images.shape[1], config.channels).to(
            device, memory_format=memory_format)
        adversary = _Adversary(discriminator, torch.optim.Adam(
            discriminator.parameters(), lr=config.lr, betas=ADAM_BETAS), config.adversarial_start)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=ADAM_BETAS)
    data = to_model_range(images)
    history: list[float] = []
    step_seconds: list[float] = []
    window: dict[str, list[float]] = {}
    final_logs: dict[str, float] = {}
    model.train()
    start = time.perf_counter()
    for step in range(1, config.train_steps + 1):
        begin = time.perf_counter()
        batch = data[rng.integers(0, len(data), config.batch_size)].to(
            device, memory_format=memory_format)
        terms = _train_step(model, autoencode, batch, config, perceptual.loss, optimizer,
                            adversary if adversary and step > adversary.start else None)
        history.append(terms["loss"])
        step_seconds.append(time.perf_counter() - begin)
        for name, value in terms.items():
            window.setdefault(name, []).append(value)
        if step % log_every == 0 or step == config.train_steps:
            final_logs = {name: float(np.mean(values)) for name, values in window.items()}
            window = {}
            log.info("stage1 step %d/%d  %s", step, config.train_steps,
                     "  ".join(f"{name} {value:.4g}" for name, value in final_logs.items()))
            if log_metrics:
                log_metrics({f"stage1/train_{name}": value for name, value in final_logs.items()},
                            step)
    seconds = time.perf_counter() - start
    model.eval().cpu().to(memory_format=torch.contiguous_format)
    return TrainResult(model, seconds, config.train_steps * config.batch_size / seconds,
                       history[-1], history, final_logs, perceptual.disabled_reason,
                       perceptual.weights_sha256, step_seconds)


def _train_step(model: Stage1Model, autoencode: Callable[[torch.Tensor], Stage1Output],
                batch: torch.Tensor, config: Stage1Config, perceptual: nn.Module | None,
                optimizer: torch.optim.Optimizer, adversary: _Adversary | None
                ) -> dict[str, float]:
    """One autoencoder update, then one discriminator update when the adversary is active."""
    out = autoencode(batch)
    terms = {"l1": (batch - out.reconstruction).abs().mean()}  # on [-1, 1]: 2x the [0, 1] L1
    reconstruction_loss = terms["l1"]
    if perceptual is not None:
        terms["lpips"] = perceptual(out.reconstruction, batch)
        reconstruction_loss = reconstruction_loss + config.perceptual_weight * terms["lpips"]
    loss = reconstruction_loss + out.regularization
    if adversary is not None:
        adversary.discriminator.requires_grad_(False)
        terms["g_loss"] = generator_loss(adversary.discriminator(out.reconstruction))
        terms["adaptive_weight"] = adaptive_weight(reconstruction_loss, terms["g_loss"],
                                                   model.last_layer())
        loss = loss + config.adversarial_weight * terms["adaptive_weight"] * terms["g_loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if adversary is not None:
        adversary.discriminator.requires_grad_(True)
        terms["d_loss"] = hinge_d_loss(adversary.discriminator(batch),
                                       adversary.discriminator(out.reconstruction.detach()))
        adversary.optimizer.zero_grad(set_to_none=True)
        terms["d_loss"].backward()
        adversary.optimizer.step()
    terms |= {"loss": loss, "regularization": out.regularization} | out.logs
    return {name: float(value.detach()) for name, value in terms.items()}


@torch.inference_mode()
def reconstruct(model: nn.Module, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Encode and decode uint8 NHWC images; returns uint8 NHWC reconstructions."""
    device = next(model.parameters(), torch.empty(0)).device
    outputs = [to_uint8(model(to_model_range(images[i:i + batch_size]).to(device)))
               for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs)
