"""Layers both model families use."""

from __future__ import annotations

import math

from torch import nn

MAX_GROUPS = 32  # GroupNorm groups, as in the DDPM, VQGAN and LDM networks


def group_norm(channels: int, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups (as many as divide `channels`)."""
    return nn.GroupNorm(math.gcd(MAX_GROUPS, channels), channels, eps=eps)
