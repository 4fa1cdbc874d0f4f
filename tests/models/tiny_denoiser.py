"""A stage-2 model kind added the way a user adds one: this file and its registration.

`stage2.kind: tiny_conv` then trains, caches, samples and tokenizes like FFTD does.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.config import Stage2Config
from harness.models import STAGE2


class TinyConvDenoiser(nn.Module):
    """Two convolutions with the time added as a channel: o(z_t, t)."""

    def __init__(self, latent_channels: int, channels: int, T: int) -> None:
        super().__init__()
        self.T = T
        self.net = nn.Sequential(nn.Conv2d(latent_channels + 1, channels, 3, padding=1),
                                 nn.SiLU(), nn.Conv2d(channels, latent_channels, 3, padding=1))

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        time = (t.float() / self.T).reshape(-1, 1, 1, 1).expand(-1, 1, *z_t.shape[2:])
        return self.net(torch.cat([z_t, time], dim=1))


@STAGE2.register("tiny_conv", "two convolutions, for the tests")
def build(config: Stage2Config, latent_channels: int, latent_size: int) -> TinyConvDenoiser:
    return TinyConvDenoiser(latent_channels, config.channels, config.T)
