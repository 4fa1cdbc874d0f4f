"""Classifier-free guidance (Ho and Salimans 2022; LDM section 4.3 "-G" models): a conditional
denoiser and the labels of a batch, seen by every sampler as the plain model(z_t, t) it calls.

    eps_guided = eps_u + s (eps_c - eps_u),  eps_c = eps(z_t, t, y), eps_u = eps(z_t, t, null)

The same combination applies to a v or x0 prediction (each is affine in eps given z_t).
s = 1 is plain conditional sampling and s = 0 unconditional sampling, one evaluation per step
each; any other s evaluates the conditional and unconditional model in one batch of 2B, so
the function evaluations per sample double (`evaluations_per_step`).
"""

from __future__ import annotations

import torch
from torch import nn

from harness.models.conditioning import NULL_LABEL


def evaluations_per_step(scale: float) -> int:
    """Model evaluations per sampler step at guidance scale s."""
    return 1 if scale in (0.0, 1.0) else 2


class Guided(nn.Module):
    """forward(z_t, t) of a conditional `model` for `labels` (B,) at guidance scale `scale`."""

    def __init__(self, model: nn.Module, labels: torch.Tensor, scale: float = 1.0) -> None:
        """`labels` on the device the sampler runs on: they are made once per batch here,
        not once per step."""
        super().__init__()
        self.model, self.scale = model, scale
        null = torch.full_like(labels, NULL_LABEL)
        if scale == 1.0:
            self.labels = labels
        elif scale == 0.0:
            self.labels = null
        else:  # the conditional and the unconditional half of one batch
            self.labels = torch.cat([labels, null])

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.scale in (0.0, 1.0):
            return self.model(z_t, t, self.labels)
        both = self.model(torch.cat([z_t, z_t]), torch.cat([t, t]), self.labels)
        conditional, unconditional = both.chunk(2)
        return unconditional + self.scale * (conditional - unconditional)
