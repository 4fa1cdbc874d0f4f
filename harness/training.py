"""Training loops. Stage 1: the autoencoder on pixels, seeded batches, L1 reconstruction."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.config import Stage1Config
from harness.models import build_stage1

log = logging.getLogger(__name__)

LogFn = Callable[[dict[str, float], int], None]


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
    history: list[float] = field(default_factory=list)


def train_stage1(config: Stage1Config, images: np.ndarray, log_metrics: LogFn | None = None,
                 log_every: int = 50) -> TrainResult:
    """Fit the stage-1 autoencoder to `images` (uint8 NHWC) with an L1 loss and Adam."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_stage1(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    data = to_model_range(images)
    history: list[float] = []
    start = time.perf_counter()
    model.train()
    for step in range(1, config.train_steps + 1):
        batch = data[rng.integers(0, len(data), config.batch_size)]
        loss = F.l1_loss(model(batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        if step % log_every == 0 or step == config.train_steps:
            recent = float(np.mean(history[-log_every:]))
            log.info("stage1 step %d/%d  l1 %.4f", step, config.train_steps, recent)
            if log_metrics:
                log_metrics({"stage1/train_l1": recent}, step)
    seconds = time.perf_counter() - start
    model.eval()
    return TrainResult(model, seconds, config.train_steps * config.batch_size / seconds,
                       history[-1], history)


@torch.inference_mode()
def reconstruct(model: nn.Module, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Encode and decode uint8 NHWC images; returns uint8 NHWC reconstructions."""
    outputs = [to_uint8(model(to_model_range(images[i:i + batch_size])))
               for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs)
