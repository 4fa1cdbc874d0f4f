"""Stage-1 loss terms: LPIPS perceptual, patch-GAN hinge, VQGAN's adaptive GAN weight."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.keys import LPIPS_NETWORK

log = logging.getLogger(__name__)

LPIPS_MIN_SIZE = 32  # AlexNet's pooling stack leaves nothing of smaller images
ADAPTIVE_DELTA = 1e-4  # delta of VQGAN Eq. 7 (taming-transformers' value)
ADAPTIVE_MAX = 1e4


class PerceptualLoss(nn.Module):
    """LPIPS(x~, x) (Zhang et al. 2018), AlexNet v0.1, frozen, inputs in [-1, 1], batch mean.

    Images under 32 pixels are upsampled bilinearly first (only for this training loss; the
    LPIPS metric is computed on the images as they are)."""

    def __init__(self, lpips_model: nn.Module) -> None:
        super().__init__()
        self.lpips = copy.deepcopy(lpips_model).eval().requires_grad_(False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # dropout in the LPIPS heads stays off

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if reconstruction.shape[-1] < LPIPS_MIN_SIZE:
            size = (LPIPS_MIN_SIZE, LPIPS_MIN_SIZE)
            reconstruction = F.interpolate(reconstruction, size, mode="bilinear")
            target = F.interpolate(target, size, mode="bilinear")
        return self.lpips(reconstruction, target).mean()


@dataclass(frozen=True)
class PerceptualTerm:
    """The LPIPS loss term, or why it is disabled; `weights_sha256` identifies the network."""

    loss: PerceptualLoss | None
    disabled_reason: str | None
    weights_sha256: str | None


def perceptual_term(weight: float) -> PerceptualTerm:
    """Load the LPIPS network through harness.weights; when it cannot be had, the term is
    disabled and the reason is logged and returned (never replaced by a stand-in)."""
    from harness.metrics.perceptual import load_lpips
    from harness.weights import WeightsUnavailable, resolve

    if weight == 0:
        return PerceptualTerm(None, "perceptual_weight is 0", None)
    try:
        found = resolve(LPIPS_NETWORK)
    except WeightsUnavailable as error:
        log.warning("stage-1 perceptual (LPIPS) loss disabled: %s", error)
        return PerceptualTerm(None, f"LPIPS weights unavailable: {error}", None)
    return PerceptualTerm(PerceptualLoss(load_lpips(found)), None, found.sha256)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss (Lim and Ye 2017; VQGAN):
    1/2 (E[max(0, 1 - D(x))] + E[max(0, 1 + D(x~))])."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator side of the hinge GAN: -E[D(x~)]."""
    return -fake_logits.mean()


def adaptive_weight(reconstruction_loss: torch.Tensor, gan_loss: torch.Tensor,
                    last_layer: torch.Tensor) -> torch.Tensor:
    """lambda = ||grad_GL L_rec|| / (||grad_GL L_GAN|| + delta), GL the decoder's last layer
    (VQGAN, Esser et al. 2021, Eq. 7), clamped to [0, 1e4] and detached."""
    rec_grad, = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)
    gan_grad, = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)
    weight = rec_grad.norm() / (gan_grad.norm() + ADAPTIVE_DELTA)
    return weight.clamp(0.0, ADAPTIVE_MAX).detach()
