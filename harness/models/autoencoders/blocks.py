"""Building blocks of the stage-1 encoder and decoder (seed 000 section 2.1, DESIGN section 4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.config import Stage1Config
from harness.models.layers import group_norm

NORM_EPS = 1e-6  # GroupNorm eps of the VQGAN / LDM autoencoders


class MultiScaleResBlock(nn.Module):
    """Seed 000 section 2.1's multi-scale residual module.

    The first convolution is split into two parallel branches with 3x3 and 5x5 receptive
    fields (a dilated 3x3), each with half the output channels, so the block sees two scales
    at the cost of one plain residual block (branch layout after MSRN, Li et al. 2018);
    then norm, SiLU, a 3x3 convolution and the residual sum (He et al. 2016).
    """

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        half = channels_out // 2
        self.norm1 = group_norm(channels_in, NORM_EPS)
        self.branch3 = nn.Conv2d(channels_in, half, 3, padding=1)
        self.branch5 = nn.Conv2d(channels_in, channels_out - half, 3, padding=2, dilation=2)
        self.norm2 = group_norm(channels_out, NORM_EPS)
        self.conv = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.skip = (nn.Identity() if channels_in == channels_out
                     else nn.Conv2d(channels_in, channels_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(x))
        h = torch.cat([self.branch3(h), self.branch5(h)], dim=1)
        h = self.conv(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the h*w positions of a feature map, with a residual sum.

    softmax(Q K^T / sqrt(d)) V per head (Vaswani et al. 2017, Eq. 1), d = channels / heads.
    A map with more than `max_tokens` positions passes through unchanged: the cost grows as
    (h*w)^2, and at f = 1 on 64x64 images one attention step costs ~100 times the block's
    convolutions on a CPU (benchmarks/stage1_throughput.py).
    """

    def __init__(self, channels: int, heads: int, max_tokens: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention_heads={heads} does not divide the {channels} channels")
        self.heads, self.max_tokens = heads, max_tokens
        self.norm = group_norm(channels, NORM_EPS)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if h * w > self.max_tokens:
            return x
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w
                                                 ).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, heads, h*w, c/heads)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Halve the resolution with a strided 3x3 convolution (VQGAN's asymmetric padding)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour, then a 3x3 convolution (no checkerboard)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def stage1_widths(config: Stage1Config) -> list[int]:
    return Stage1Config.level_widths(config.f, config.channels, config.channel_mult)


class Encoder(nn.Module):
    """E: x (3, H, W) -> (out_channels, H/f, W/f) with f = 2^m (LDM section 3.1).

    Per level: num_res_blocks multi-scale residual blocks, then a downsampling step (none
    after the last); at the lowest resolution: block, multi-head attention, block.
    """

    def __init__(self, config: Stage1Config, out_channels: int) -> None:
        super().__init__()
        widths = stage1_widths(config)
        heads, max_tokens = config.attention_heads, config.attention_max_tokens
        self.conv_in = nn.Conv2d(3, widths[0], 3, padding=1)
        layers: list[nn.Module] = []
        width = widths[0]
        for level, level_width in enumerate(widths):
            for _ in range(config.num_res_blocks):
                layers.append(MultiScaleResBlock(width, level_width))
                width = level_width
            if level < len(widths) - 1:
                layers.append(Downsample(width))
        layers += [MultiScaleResBlock(width, width), SelfAttention(width, heads, max_tokens),
                   MultiScaleResBlock(width, width)]
        self.body = nn.Sequential(*layers)
        self.norm_out = group_norm(width, NORM_EPS)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(self.body(self.conv_in(x)))))


class Decoder(nn.Module):
    """D: the mirror image of the Encoder, (in_channels, H/f, W/f) -> (3, H, W)."""

    def __init__(self, config: Stage1Config, in_channels: int) -> None:
        super().__init__()
        widths = stage1_widths(config)
        heads, max_tokens = config.attention_heads, config.attention_max_tokens
        width = widths[-1]
        self.conv_in = nn.Conv2d(in_channels, width, 3, padding=1)
        layers: list[nn.Module] = [MultiScaleResBlock(width, width),
                                   SelfAttention(width, heads, max_tokens),
                                   MultiScaleResBlock(width, width)]
        for level in reversed(range(len(widths))):
            for _ in range(config.num_res_blocks):
                layers.append(MultiScaleResBlock(width, widths[level]))
                width = widths[level]
            if level > 0:
                layers.append(Upsample(width))
        self.body = nn.Sequential(*layers)
        self.norm_out = group_norm(width, NORM_EPS)
        self.conv_out = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(self.body(self.conv_in(z)))))
