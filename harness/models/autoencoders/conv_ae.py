"""A plain convolutional autoencoder without regularizer: the cheap baseline stage 1.

The encoder halves the resolution log2(f) times with strided convolutions, so a 64x64
image becomes a (latent_channels, 64/f, 64/f) latent; the decoder mirrors it.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.config import Stage1Config
from harness.models.autoencoders.base import Stage1Model, Stage1Output
from harness.models.autoencoders.blocks import stage1_widths


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.SiLU())


class ConvAutoencoder(Stage1Model):
    def __init__(self, widths: list[int], latent_channels: int) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        levels = len(widths) - 1
        self.f = 2**levels
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

    def autoencode(self, x: torch.Tensor) -> Stage1Output:
        return Stage1Output(self.decode(self.encode(x)), x.new_zeros(()))

    def last_layer(self) -> torch.Tensor:
        return self.decoder[-1].weight


def build(config: Stage1Config) -> ConvAutoencoder:
    return ConvAutoencoder(stage1_widths(config), config.latent_channels)
