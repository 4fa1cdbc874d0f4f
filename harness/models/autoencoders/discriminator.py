"""Patch discriminator for the adversarial term of the stage-1 loss (LDM section 3.1)."""

from __future__ import annotations

import math

import torch
from torch import nn

MAX_LAYERS = 3  # PatchGAN's n_layers = 3 (Isola et al. 2017), 70x70 receptive field
MAX_MULT = 8


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017, section 3.2.2) as used by VQGAN: one real/fake logit per
    overlapping patch. Fewer strided layers for small images, so at least 2x2 logits remain."""

    def __init__(self, resolution: int, channels: int = 64) -> None:
        super().__init__()
        n_layers = max(1, min(MAX_LAYERS, int(math.log2(resolution)) - 2))
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = channels
        for n in range(1, n_layers + 1):
            stride = 2 if n < n_layers else 1
            out = channels * min(2**n, MAX_MULT)
            layers += [nn.Conv2d(width, out, 4, stride, 1, bias=False),
                       nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
