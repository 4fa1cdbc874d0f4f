"""KL-regularized autoencoder (LDM section 3.1, KL-reg): a Gaussian posterior, a slight KL."""

from __future__ import annotations

import torch

from harness.config import Stage1Config
from harness.models.autoencoders.base import Stage1Model, Stage1Output
from harness.models.autoencoders.blocks import Decoder, Encoder

LOGVAR_RANGE = (-30.0, 20.0)  # clamp of log sigma^2, as in the LDM code base


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, sigma^2) || N(0, I)) = 1/2 sum(mean^2 + sigma^2 - 1 - log sigma^2) per image
    (Kingma and Welling 2014, App. B)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


class KLAutoencoder(Stage1Model):
    """E(x) gives the mean and log-variance of q(z|x); training decodes z = mean + sigma * eps.

    The KL term is summed over the latent and divided by the image's 3HW values, so that with
    every loss term a per-pixel mean the weight means what LDM's kl_weight = 1e-6 means for
    its per-image sums. `encode` returns the posterior mean (deterministic latents).
    """

    def __init__(self, config: Stage1Config) -> None:
        super().__init__()
        self.f, self.latent_channels = config.f, config.latent_channels
        self.kl_weight = config.kl_weight
        self.encoder = Encoder(config, 2 * config.latent_channels)
        self.decoder = Decoder(config, config.latent_channels)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def autoencode(self, x: torch.Tensor) -> Stage1Output:
        mean, logvar = self.posterior(x)
        z = mean + (0.5 * logvar).exp() * torch.randn_like(mean) if self.training else mean
        kl = kl_to_standard_normal(mean, logvar).mean()
        per_pixel = kl / x[0].numel()
        return Stage1Output(self.decoder(z), self.kl_weight * per_pixel, {"kl": kl.detach()})

    def last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight


def build(config: Stage1Config) -> KLAutoencoder:
    return KLAutoencoder(config)
