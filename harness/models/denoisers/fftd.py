"""FFTD: the feature-fusion transformer denoiser eps_theta(z_t, t) of seed 000 section 2.2.

A U-shaped network on the latent grid: at each resolution a time-conditioned residual
block, a transformer block (multi-head self-attention over the grid's tokens, then an MLP)
and channel plus spatial attention; downsampling, a middle, then upsampling where each
decoder feature h is merged with the encoder feature s of its resolution by the fusion mode
of DESIGN section 4:
  add       h + s
  concat    a 1x1 projection of [h; s]
  adaptive  gates g from channel and spatial attention on [h; s], then a 1x1 projection of
            [g * h; (1 - g) * s]
so the parameter count orders add < concat < adaptive, as seed 000 section 3.4 reports.

Conditional (`stage2.conditioning`, harness.models.conditioning): `class` adds a class
embedding to the time embedding; `cross_attention` gives every transformer block a
cross-attention to tau_theta(y) after its self-attention, as LDM's transformer blocks have
(seed 001 Eq. 3). forward(z_t, t, labels) then takes labels, NULL_LABEL for none.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harness.config import Stage2Config
from harness.models.conditioning import (
    ClassEmbedding,
    ConditionTokens,
    CrossAttention,
    built_aside,
    check_conditioning,
)
from harness.models.layers import group_norm

DEFAULT_CONDITION_TOKENS = 4
Condition = tuple[torch.Tensor, torch.Tensor]  # tau_theta(y) (B, tokens, dim), labels y


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017; DDPM appendix B)."""
    half = dim // 2
    steps = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * steps / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the timestep embedding added in between (DDPM's block)
    or, with `scale_shift`, setting a scale and shift of each channel after the second
    GroupNorm, (1 + a) GN(h) + b (ADM's scale-shift norm, Dhariwal and Nichol 2021). An
    embedding added per channel is erased by a GroupNorm with one channel per group, as
    group_norm gives every width up to 32; scale_shift conditions at every width."""

    def __init__(self, channels_in: int, channels_out: int, embed_dim: int, dropout: float,
                 scale_shift: bool = False) -> None:
        super().__init__()
        self.norm1, self.conv1 = group_norm(channels_in), nn.Conv2d(channels_in, channels_out,
                                                                    3, padding=1)
        self.scale_shift = scale_shift
        self.embed = nn.Linear(embed_dim, (2 if scale_shift else 1) * channels_out)
        self.norm2, self.conv2 = group_norm(channels_out), nn.Conv2d(channels_out, channels_out,
                                                                     3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = (nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out
                     else nn.Identity())

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        embedded = self.embed(F.silu(embedding))[:, :, None, None]
        if self.scale_shift:
            scale, shift = embedded.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + embedded)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class TransformerBlock(nn.Module):
    """Pre-norm multi-head self-attention, cross-attention to the condition tokens when the
    model has them, and MLP over the H*W tokens of a feature map."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(channels)
        self.attention = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, 4 * channels), nn.GELU(),
                                 nn.Linear(4 * channels, channels))
        self.cross: CrossAttention | None = None  # set by FFTD for cross_attention

    def forward(self, x: torch.Tensor, condition: Condition | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        normed = self.norm1(tokens)
        tokens = tokens + self.attention(normed, normed, normed, need_weights=False)[0]
        if self.cross is not None and condition is not None:
            tokens = self.cross(tokens, *condition)
        tokens = tokens + self.mlp(self.norm2(tokens))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation gate per channel: sigmoid(MLP(avgpool(x))) (CBAM's channel half)."""

    def __init__(self, channels_in: int, channels_out: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(4, channels_in // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels_in, hidden), nn.SiLU(),
                                 nn.Linear(hidden, channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x.mean(dim=(2, 3))))[:, :, None, None]


class SpatialAttention(nn.Module):
    """Gate per position: sigmoid(conv7x7([mean_c(x); max_c(x)])) (CBAM's spatial half)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class ChannelSpatialAttention(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channel, self.spatial = ChannelAttention(channels, channels), SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)
        return x * self.spatial(x)


class AddFusion(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()

    def forward(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return h + s


class ConcatFusion(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([h, s], dim=1))


class AdaptiveFusion(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channel = ChannelAttention(2 * channels, channels)
        self.spatial = SpatialAttention()
        self.project = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        both = torch.cat([h, s], dim=1)
        gate = self.channel(both) * self.spatial(both)
        return self.project(torch.cat([gate * h, (1 - gate) * s], dim=1))


FUSIONS: dict[str, type[nn.Module]] = {"add": AddFusion, "concat": ConcatFusion,
                                       "adaptive": AdaptiveFusion}


class Level(nn.Module):
    """Residual block, transformer block (at low enough resolution) and CBAM attention."""

    def __init__(self, channels_in: int, channels_out: int, embed_dim: int, heads: int,
                 attention: bool, dropout: float, scale_shift: bool = False) -> None:
        super().__init__()
        self.res = ResBlock(channels_in, channels_out, embed_dim, dropout, scale_shift)
        self.transformer = TransformerBlock(channels_out, heads) if attention else nn.Identity()
        self.cbam = ChannelSpatialAttention(channels_out)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor,
                condition: Condition | None = None) -> torch.Tensor:
        h = self.res(x, embedding)
        if isinstance(self.transformer, TransformerBlock):
            h = self.transformer(h, condition)
        return self.cbam(h)


class FFTD(nn.Module):
    """eps_theta(z_t, t) on (latent_channels, latent_size, latent_size) latents; the widths
    are channels * channel_mult, attention at sizes <= attention_resolution."""

    def __init__(self, latent_channels: int, latent_size: int, *, channels: int,
                 channel_mult: tuple[int, ...], heads: int, attention_resolution: int,
                 fusion: str, dropout: float, conditioning: str = "none", num_classes: int = 0,
                 condition_tokens: int = DEFAULT_CONDITION_TOKENS, scale_shift: bool = False
                 ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; expected one of {sorted(FUSIONS)}")
        self.channels = channels
        embed_dim = 4 * channels
        self.embed = nn.Sequential(nn.Linear(channels, embed_dim), nn.SiLU(),
                                   nn.Linear(embed_dim, embed_dim))
        self.conv_in = nn.Conv2d(latent_channels, channels, 3, padding=1)
        widths = [channels * mult for mult in channel_mult]
        sizes = [max(1, latent_size // 2**i) for i in range(len(widths))]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = channels
        for i, (width, size) in enumerate(zip(widths, sizes, strict=True)):
            self.down.append(Level(previous, width, embed_dim, heads,
                                   size <= attention_resolution, dropout, scale_shift))
            last = i == len(widths) - 1
            self.downsample.append(nn.Identity() if last else
                                   nn.Conv2d(width, width, 3, stride=2, padding=1))
            previous = width
        self.middle = Level(previous, previous, embed_dim, heads, True, dropout, scale_shift)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for i in reversed(range(len(widths))):
            first = i == len(widths) - 1
            self.upsample.append(nn.Identity() if first else
                                 nn.Conv2d(previous, widths[i], 3, padding=1))
            self.fuse.append(FUSIONS[fusion](widths[i]))
            self.up.append(Level(widths[i], widths[i], embed_dim, heads,
                                 sizes[i] <= attention_resolution, dropout, scale_shift))
            previous = widths[i]
        self.norm_out = group_norm(previous)
        self.conv_out = nn.Conv2d(previous, latent_channels, 3, padding=1)
        check_conditioning("fftd", conditioning, ("class", "cross_attention"), num_classes)
        with built_aside():  # the layers above start as in the unconditional model
            self._add_conditioning(conditioning, num_classes, embed_dim, heads,
                                   condition_tokens)

    def _add_conditioning(self, conditioning: str, num_classes: int, embed_dim: int,
                          heads: int, tokens: int) -> None:
        self.class_embed = (ClassEmbedding(num_classes, embed_dim)
                            if conditioning == "class" else None)
        self.tau = None
        if conditioning == "cross_attention":
            self.tau = ConditionTokens(num_classes, tokens, embed_dim)
            for module in self.modules():
                if isinstance(module, TransformerBlock):
                    width = module.norm1.normalized_shape[0]
                    module.cross = CrossAttention(width, embed_dim, heads)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None
                ) -> torch.Tensor:
        embedding = self.embed(timestep_embedding(t, self.channels))
        condition = None
        if labels is not None and self.class_embed is not None:
            embedding = embedding + self.class_embed(labels)
        if labels is not None and self.tau is not None:
            condition = (self.tau(labels), labels)
        h = self.conv_in(z_t)
        skips = []
        for level, down in zip(self.down, self.downsample, strict=True):
            h = level(h, embedding, condition)
            skips.append(h)
            h = down(h)
        h = self.middle(h, embedding, condition)
        for level, up, fuse in zip(self.up, self.upsample, self.fuse, strict=True):
            s = skips.pop()
            if h.shape[-1] != s.shape[-1]:
                h = F.interpolate(h, size=s.shape[-2:], mode="nearest")
            h = level(fuse(up(h), s), embedding, condition)
        return self.conv_out(F.silu(self.norm_out(h)))


def build(config: Stage2Config, latent_channels: int, latent_size: int, num_classes: int = 0
          ) -> FFTD:
    """The registered builder (`stage2.kind: fftd`): every setting from the config."""
    return FFTD(latent_channels, latent_size, channels=config.channels,
                channel_mult=tuple(config.channel_mult), heads=config.heads,
                attention_resolution=config.attention_resolution, fusion=config.fusion,
                dropout=config.dropout, conditioning=config.conditioning,
                num_classes=num_classes,
                condition_tokens=config.condition_tokens or DEFAULT_CONDITION_TOKENS,
                scale_shift=config.scale_shift)
