"""A plain convolutional autoencoder: the spine's stage 1 until the IVQ-VAE lands.

The encoder halves the resolution log2(f) times with strided convolutions, so a 64x64
image becomes a (latent_channels, 64/f, 64/f) latent; the decoder mirrors it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from harness.config import Stage1Config
from harness.models import register_stage1


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.SiLU())


class ConvAutoencoder(nn.Module):
    def __init__(self, f: int, channels: int, latent_channels: int) -> None:
        super().__init__()
        levels = int(math.log2(f))
        widths = [channels * min(2**level, 4) for level in range(levels + 1)]
        encoder: list[nn.Module] = [_block(3, widths[0])]
        for level in range(levels):
            encoder += [nn.Conv2d(widths[level], widths[level + 1], 4, stride=2, padding=1),
                        nn.SiLU()]
        encoder.append(nn.Conv2d(widths[-1], latent_channels, 1))
        decoder: list[nn.Module] = [_block(latent_channels, widths[-1])]
        for level in reversed(range(levels)):
            decoder += [nn.ConvTranspose2d(widths[level + 1], widths[level], 4, stride=2,
                                           padding=1), nn.SiLU()]
        decoder.append(nn.Conv2d(widths[0], 3, 3, padding=1))
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@register_stage1("conv_ae")
def build(config: Stage1Config) -> ConvAutoencoder:
    return ConvAutoencoder(config.f, config.channels, config.latent_channels)
