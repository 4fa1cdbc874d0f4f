"""`stage2.kind: dit`: a diffusion transformer (DiT, Peebles and Xie 2023) as eps_theta(z_t, t).

The latent is cut into p x p patches (p = 2, or 1 for a latent under 8 x 8 or of odd size,
so that a tiny latent still has enough tokens), embedded with fixed 2-D sin-cos positions
into `channels` wide tokens and run through `depth` transformer blocks (default 4) of
`heads` heads, each conditioned on the timestep by adaptive layer norm; a linear layer maps
every token back to its patch.

diffusers' DiTTransformer2DModel is class-conditional: each block's adaLN-Zero adds a label
embedding to the timestep's and drops labels at random for classifier-free guidance, so an
unconditional model would need a constant label and the dropout switched off inside it.
Instead this is diffusers' Transformer2DModel with `norm_type="ada_norm_single"`, the same
patch transformer with PixArt-alpha's adaLN-single (Chen et al. 2023, section 2.3): one
timestep MLP shared by the blocks, each with its own learned shift and scale table. It is
unconditional as configured (no cross-attention, no caption or size conditions) and takes
the timestep as a float through the sinusoidal embedding, so fractional times work.
`channel_mult`, `attention_resolution` and `fusion` do not apply to it.
"""

from __future__ import annotations

import torch
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn

from harness.config import Stage2Config
from harness.models.conditioning import check_conditioning

DEFAULT_DEPTH = 4
MIN_SIZE_FOR_PATCH_2 = 8


def patch_size(latent_size: int) -> int:
    return 2 if latent_size >= MIN_SIZE_FOR_PATCH_2 and latent_size % 2 == 0 else 1


class DiT(nn.Module):
    """forward(z_t, t) on (latent_channels, latent_size, latent_size) latents."""

    def __init__(self, latent_channels: int, latent_size: int, *, channels: int, heads: int,
                 depth: int, dropout: float) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"heads={heads} must divide the {channels} channels")
        self.transformer = Transformer2DModel(
            num_attention_heads=heads, attention_head_dim=channels // heads,
            in_channels=latent_channels, out_channels=latent_channels, num_layers=depth,
            dropout=dropout, sample_size=latent_size, patch_size=patch_size(latent_size),
            norm_type="ada_norm_single", use_additional_conditions=False,
            activation_fn="gelu-approximate", attention_bias=True,
            norm_elementwise_affine=False, norm_eps=1e-6)  # DiT's and PixArt's settings

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # (the tuple: its output class warns at every call that it is deprecated)
        return self.transformer(z_t, timestep=t, return_dict=False)[0]


def build(config: Stage2Config, latent_channels: int, latent_size: int, num_classes: int = 0
          ) -> DiT:
    """The registered builder (`stage2.kind: dit`); unconditional only (see the docstring)."""
    check_conditioning("dit", config.conditioning, (), num_classes)
    return DiT(latent_channels, latent_size, channels=config.channels, heads=config.heads,
               depth=config.depth or DEFAULT_DEPTH, dropout=config.dropout)
