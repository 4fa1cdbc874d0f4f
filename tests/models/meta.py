"""Models on the meta device, for the tests that every op follows its inputs' device.

A meta tensor has a shape and no data; an op that mixes it with a tensor made on the CPU
raises, so a function that creates a tensor without its inputs' device fails on meta (as it
would on a GPU) in a CPU-only test run, at almost no cost.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.config import Stage2Config
from harness.models import build_stage2

META = torch.device("meta")


def meta_fftd(latent_channels: int = 3, latent_size: int = 4, T: int = 8,
              fusion: str = "adaptive") -> nn.Module:
    """A small FFTD (attention, both resolutions, the given fusion) moved to meta."""
    config = Stage2Config(channels=8, channel_mult=[1, 2], heads=2, attention_resolution=4,
                          fusion=fusion, T=T)
    return build_stage2(config, latent_channels, latent_size).eval().to(META)
