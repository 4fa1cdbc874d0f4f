"""`stage2.kind: unet2d`: diffusers' UNet2DModel, the DDPM / ADM U-Net, as eps_theta(z_t, t).

Levels of width channels * channel_mult on the latent grid, `depth` residual blocks per level
(default 1, as FFTD has one block per level), self-attention at the levels whose size is at
most attention_resolution and always in the middle block (as FFTD), skips concatenated
(`fusion` is FFTD's and ignored here). diffusers keeps one head width for every attention
block, channels / heads, so a level k times as wide as the first has k times the heads. The
timestep goes through the sinusoidal embedding as a float, so fractional times (the Euler
sampler's, rectified flow's) are fine. `stage2.conditioning: class` sets UNet2DModel's class
embedding, added to its time embedding, to harness.models.conditioning's ClassEmbedding (zero
for the null label); forward then takes labels. `stage2.scale_shift` is UNet2DModel's
`resnet_time_scale_shift="scale_shift"` (ADM's scale-shift norm).
"""

from __future__ import annotations

import math

import torch
from diffusers.models.unets.unet_2d import UNet2DModel
from torch import nn

from harness.config import Stage2Config
from harness.models.conditioning import (
    ClassEmbedding,
    built_aside,
    check_conditioning,
    null_labels,
)
from harness.models.layers import MAX_GROUPS

DEFAULT_DEPTH = 1


class UNet2D(nn.Module):
    """forward(z_t, t) = UNet2DModel(z_t, t).sample on (latent_channels, size, size) latents."""

    def __init__(self, latent_channels: int, latent_size: int, *, channels: int,
                 channel_mult: tuple[int, ...], heads: int, attention_resolution: int,
                 depth: int, dropout: float, conditioning: str = "none", num_classes: int = 0,
                 scale_shift: bool = False) -> None:
        super().__init__()
        widths = tuple(channels * mult for mult in channel_mult)
        if latent_size % 2 ** (len(widths) - 1):
            raise ValueError(f"unet2d halves the {latent_size}x{latent_size} latent "
                             f"{len(widths) - 1} times (channel_mult {list(channel_mult)}): "
                             "its size must be divisible by that")
        attention = [latent_size // 2**level <= attention_resolution
                     for level in range(len(widths))]
        self.unet = UNet2DModel(
            sample_size=latent_size, in_channels=latent_channels, out_channels=latent_channels,
            block_out_channels=widths, layers_per_block=depth, dropout=dropout,
            down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
            up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D"
                                 for a in reversed(attention)),
            attention_head_dim=channels // heads,
            resnet_time_scale_shift="scale_shift" if scale_shift else "default",
            norm_num_groups=math.gcd(MAX_GROUPS, *widths))
        check_conditioning("unet2d", conditioning, ("class",), num_classes)
        if conditioning == "class":
            with built_aside():
                self.unet.class_embedding = ClassEmbedding(num_classes, 4 * widths[0])

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None
                ) -> torch.Tensor:
        if self.unet.class_embedding is not None and labels is None:
            labels = null_labels(len(z_t), z_t.device)
        return self.unet(z_t, t, class_labels=labels).sample


def build(config: Stage2Config, latent_channels: int, latent_size: int, num_classes: int = 0
          ) -> UNet2D:
    """The registered builder (`stage2.kind: unet2d`)."""
    return UNet2D(latent_channels, latent_size, channels=config.channels,
                  channel_mult=tuple(config.channel_mult), heads=config.heads,
                  attention_resolution=config.attention_resolution,
                  depth=config.depth or DEFAULT_DEPTH, dropout=config.dropout,
                  conditioning=config.conditioning, num_classes=num_classes,
                  scale_shift=config.scale_shift)
