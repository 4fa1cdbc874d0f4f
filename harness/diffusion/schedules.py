"""Discrete-time variance-preserving noise schedules (DDPM; seed 001 Eq. 1-2).

The forward process is q(z_t | z_0) = N(sqrt(alpha_bar_t) z_0, (1 - alpha_bar_t) I) for
t = 0 .. T-1, with alpha_bar_t = prod_{s <= t} (1 - beta_s). `alpha_bar` is the "a" of the
DDIM update in DESIGN section 4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

BETA_SCHEDULES = ("linear", "scaled_linear", "cosine")
PROCESSES = ("ddpm", "rectified_flow")  # Stage2Config.process


def make_betas(kind: str, T: int) -> torch.Tensor:
    """beta_1 .. beta_T in float64.

    linear: Ho et al. 2020 (1e-4 .. 0.02 at T = 1000, rescaled so that other T give the
    same total noise); scaled_linear: the LDM schedule (sqrt-linear 0.00085 .. 0.012,
    likewise rescaled); cosine: Nichol & Dhariwal 2021 with s = 0.008.
    """
    scale = 1000 / T
    if kind == "linear":
        return torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace(math.sqrt(scale * 0.00085), math.sqrt(scale * 0.012), T,
                              dtype=torch.float64) ** 2
    if kind == "cosine":
        s = 0.008
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        alpha_bar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule {kind!r}; expected one of {BETA_SCHEDULES}")


@dataclass(frozen=True)
class NoiseSchedule:
    """betas, alphas and alpha_bar of a T-step forward process (float64, CPU)."""

    betas: torch.Tensor

    @classmethod
    def create(cls, kind: str, T: int) -> NoiseSchedule:
        return cls(make_betas(kind, T))

    @property
    def T(self) -> int:
        return len(self.betas)

    @property
    def alphas(self) -> torch.Tensor:
        return 1.0 - self.betas

    @property
    def alpha_bar(self) -> torch.Tensor:
        return torch.cumprod(self.alphas, 0)

    def alpha_bar_at(self, t: torch.Tensor | int) -> torch.Tensor:
        """alpha_bar_t with alpha_bar_{-1} = 1 (the clean end of the chain)."""
        t = torch.as_tensor(t)
        padded = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar])
        return padded[t + 1]

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t)."""
        a = self.alpha_bar_at(t)
        return a / (1 - a)

    def add_noise(self, z0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z_t = sqrt(alpha_bar_t) z_0 + sqrt(1 - alpha_bar_t) eps (DDPM Eq. 4)."""
        a = _broadcast(self.alpha_bar_at(t), z0)
        return a.sqrt() * z0 + (1 - a).sqrt() * eps


@dataclass(frozen=True)
class RectifiedFlow:
    """Rectified flow / flow matching (seed 002 Sec. 2.1.4): z_t = (1 - t) z_0 + t eps,
    t ~ U(0, 1), velocity v = d z_t / dt = eps - z_0. `T` only scales the time fed to the
    network, t * T, so that its sinusoidal embedding spans the range of the DDPM models."""

    T: int

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - t

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.T

    def add_noise(self, z0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z_t = (1 - t) z_0 + t eps."""
        t = _broadcast(t, z0)
        return (1 - t) * z0 + t * eps


def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))
