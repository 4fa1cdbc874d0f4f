"""A stage-2 denoiser of your own, used by import path: `stage2.kind:
"examples.custom_denoiser:ConvDenoiser"` (examples/custom_denoiser.yaml).

Nothing is registered: the harness imports the class when it builds the model, calls it as
`ConvDenoiser(config, latent_channels, latent_size)` and then calls `forward(z_t, t)`, which
returns the prediction `stage2.prediction` names (eps by default) in z_t's shape. `t` is a
(batch,) tensor of the process's times, integer steps for DDPM and fractional ones for
rectified flow, so the embedding takes floats. Run from the repository root (the module is
imported from the working directory or PYTHONPATH).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harness.config import Stage2Config


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(8, channels), nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.time = nn.Linear(channels, channels)

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        r = self.conv1(F.silu(self.norm1(h))) + self.time(embedding)[:, :, None, None]
        return h + self.conv2(F.silu(self.norm2(r)))


class ConvDenoiser(nn.Module):
    """A plain residual conv net at the latent's resolution, the time added in every block;
    `stage2.channels` is its width, `stage2.depth` its number of blocks (default 2)."""

    def __init__(self, config: Stage2Config, latent_channels: int, latent_size: int) -> None:
        super().__init__()
        width = config.channels
        self.width = width
        self.embed = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.conv_in = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(ResidualBlock(width) for _ in range(config.depth or 2))
        self.conv_out = nn.Conv2d(width, latent_channels, 3, padding=1)

    def time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """Sinusoids of the (float) times, on t's device."""
        half = self.width // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
        angles = t.float()[:, None] * freqs[None]
        return self.embed(torch.cat([angles.cos(), angles.sin()], dim=1))

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        embedding = self.time_embedding(t)
        h = self.conv_in(z_t)
        for block in self.blocks:
            h = block(h, embedding)
        return self.conv_out(F.silu(h))
