"""IVQ-VAE (seed 000 section 2.1): multi-scale residual encoder, VQ codebook of size K, decoder."""

from __future__ import annotations

import torch

from harness.config import Stage1Config
from harness.models.autoencoders.base import Stage1Model, Stage1Output
from harness.models.autoencoders.blocks import Decoder, Encoder
from harness.models.autoencoders.quantizer import VectorQuantizerEMA, straight_through


class IVQVAE(Stage1Model):
    """x -> z_e = E(x) -> z_q = q(z_e) -> x~ = D(z_q).

    As in LDM's VQ-reg (section 3.1) the quantization layer belongs to the decoder: `encode`
    returns the continuous z_e that stage 2 models, and `decode` quantizes before decoding,
    so a sampled latent is snapped onto the codebook.
    """

    def __init__(self, config: Stage1Config) -> None:
        super().__init__()
        self.f, self.latent_channels = config.f, config.latent_channels
        self.beta = config.beta
        self.encoder = Encoder(config, config.latent_channels)
        self.quantizer = VectorQuantizerEMA(config.K, config.latent_channels, config.ema_decay,
                                            config.dead_code_threshold)
        self.decoder = Decoder(config, config.latent_channels)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """D(q(z)) with the forward's straight-through value, without its code statistics
        (a histogram whose size depends on the codes: a device sync per batch)."""
        return self.decoder(straight_through(z, self.quantizer.quantize(z)[0]))

    def code_indices(self, x: torch.Tensor) -> torch.Tensor:
        """The (b, h, w) codebook indices of images x (no codebook update)."""
        z = self.encoder(x)
        b, c, h, w = z.shape
        return self.quantizer.nearest(z.permute(0, 2, 3, 1).reshape(-1, c)).view(b, h, w)

    def autoencode(self, x: torch.Tensor) -> Stage1Output:
        quantized = self.quantizer(self.encoder(x))
        logs = {"vq_loss": quantized.vq_loss, "perplexity": quantized.perplexity,
                "codebook_usage": quantized.usage}
        return Stage1Output(self.decoder(quantized.z_q), self.beta * quantized.commitment, logs)

    def parameter_count(self) -> int:
        return super().parameter_count() + self.quantizer.embedding.numel()

    def last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight


def build(config: Stage1Config) -> IVQVAE:
    return IVQVAE(config)
