"""The identity "autoencoder": E(x) = x, D(z) = z on images in [-1, 1] (f = 1, nothing learned).

With it stage 2 is a pixel-space diffusion model, so the same trial pipeline (and gDDCM,
seed 002) can compare latent and pixel-space models the harness trains.
"""

from __future__ import annotations

import torch

from harness.config import Stage1Config
from harness.models.autoencoders.base import Stage1Model, Stage1Output


class IdentityAutoencoder(Stage1Model):
    f = 1
    latent_channels = 3

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def autoencode(self, x: torch.Tensor) -> Stage1Output:
        return Stage1Output(x, x.new_zeros(()))


def build(config: Stage1Config) -> IdentityAutoencoder:
    return IdentityAutoencoder()
