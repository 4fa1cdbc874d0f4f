"""The interface every stage-1 autoencoder implements, and what one training forward returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class Stage1Output:
    reconstruction: torch.Tensor
    regularization: torch.Tensor  # weighted term added to the loss (commitment or KL); 0 if none
    logs: dict[str, torch.Tensor] = field(default_factory=dict)  # detached scalars to log


class Stage1Model(nn.Module):
    """E and D of LDM section 3.1: z = E(x) of shape (c, H/f, W/f), x~ = D(z).

    `encode` gives the latent stage 2 trains on; `decode` maps any such latent (a sampled
    one included) to an image; `autoencode` is the training forward with its regularizer.
    """

    f: int  # H / h
    latent_channels: int  # c

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def autoencode(self, x: torch.Tensor) -> Stage1Output:
        raise NotImplementedError

    def last_layer(self) -> torch.Tensor:
        """The decoder's output weight, for the adaptive GAN weight (VQGAN Eq. 7)."""
        raise NotImplementedError

    def parameter_count(self) -> int:
        """Learned numbers of E and D (and the codebook, which EMA rather than SGD learns)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.autoencode(x).reconstruction
