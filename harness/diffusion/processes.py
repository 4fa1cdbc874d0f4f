"""Forward processes, one abstraction for training, samplers and gDDCM, registered by name.

Every process has the unified marginal of seed 002 Eq. 8,

    z_t = alpha(t) z_0 + sigma(t) eps,

written s(t) and Sigma(t) in the seed (here `alpha` and `sigma`), in the process's own time:
a step index 0..T-1 for discrete-time DDPM (-1 is the clean end), t in [0, 1] for rectified
flow. `alpha` and `sigma` are float64 scalars; `add_noise` is the same marginal on a batch.
Tensors a process makes are on the device of the times it is given (or `device`).

ddpm            q(z_t | z_0) = N(sqrt(alpha_bar_t) z_0, (1 - alpha_bar_t) I), alpha_bar_t =
                prod_{s <= t} (1 - beta_s) (seed 001 Eq. 1-2; DESIGN section 4's "a")
rectified_flow  z_t = (1 - t) z_0 + t eps, velocity v = eps - z_0 (seed 002 Sec. 2.1.4, Eq. 7)

A new process is one class here with a factory, both registered in `harness.diffusion`
(PROCESSES, and its training loss in LOSSES).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

import torch

from harness.diffusion import PROCESSES

if TYPE_CHECKING:
    from harness.config import Stage2Config

BETA_SCHEDULES = ("linear", "scaled_linear", "cosine")


class Process(Protocol):
    name: str
    T: int  # steps of a discrete process; the time scale fed to a continuous-time network
    discrete: bool  # True: times are integer steps (and gDDCM uses Eq. 11)

    @property
    def t_min(self) -> float: ...  # the clean end
    @property
    def t_max(self) -> float: ...  # the largest time the model is trained on

    def alpha(self, t: float) -> float: ...
    def sigma(self, t: float) -> float: ...
    def v_coefficients(self, t: float) -> tuple[float, float]: ...
    def add_noise(self, z0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor
                  ) -> torch.Tensor: ...
    def training_times(self, batch: int, generator: torch.Generator | None
                       ) -> torch.Tensor: ...
    def model_time(self, t: torch.Tensor | float, batch: int | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor: ...


def make_process(name: str, beta_schedule: str = "scaled_linear", T: int = 500) -> Process:
    """The forward process registered as `name` (Stage2Config.process) with T steps."""
    if name not in PROCESSES.names():
        raise ValueError(f"unknown process {name!r}; expected one of {PROCESSES.names()}")
    return PROCESSES.builder(name)(beta_schedule, T)


def process_of(stage2: Stage2Config) -> Process:
    """The forward process a stage-2 model is trained on."""
    return make_process(stage2.process, stage2.beta_schedule, stage2.T)


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
class DDPM:
    """Discrete-time variance-preserving DDPM: alpha = sqrt(alpha_bar_t),
    sigma = sqrt(1 - alpha_bar_t), t = 0 .. T-1 (float64 tables on the CPU, copied once to
    each device whose timesteps index them)."""

    betas: torch.Tensor
    name = "ddpm"
    discrete = True

    @classmethod
    def create(cls, beta_schedule: str, T: int) -> DDPM:
        return cls(make_betas(beta_schedule, T))

    @property
    def T(self) -> int:
        return len(self.betas)

    @property
    def t_min(self) -> float:
        return -1

    @property
    def t_max(self) -> float:
        return self.T - 1

    @property
    def alpha_bar(self) -> torch.Tensor:
        return self._padded_alpha_bar[1:]

    @cached_property
    def _padded_alpha_bar(self) -> torch.Tensor:
        """[1, alpha_bar_0, ..., alpha_bar_{T-1}], made once: samplers and gDDCM read it at
        every step."""
        return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1.0 - self.betas, 0)])

    @cached_property
    def _tables(self) -> dict[torch.device, torch.Tensor]:
        return {}

    def _padded_alpha_bar_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._tables:
            self._tables[device] = self._padded_alpha_bar.to(device)
        return self._tables[device]

    def alpha_bar_at(self, t: torch.Tensor | int, device: torch.device | str | None = None
                     ) -> torch.Tensor:
        """alpha_bar_t with alpha_bar_{-1} = 1 (the clean end of the chain), on t's device
        (an int t: on `device`, default the CPU)."""
        if isinstance(t, torch.Tensor):
            return self._padded_alpha_bar_on(t.device)[t + 1]
        return self._padded_alpha_bar_on(torch.device(device or "cpu"))[t + 1].clone()

    def alpha(self, t: float) -> float:
        return float(self.alpha_bar_at(int(t))) ** 0.5

    def sigma(self, t: float) -> float:
        return (1.0 - float(self.alpha_bar_at(int(t)))) ** 0.5

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t)."""
        a = self.alpha_bar_at(t)
        return a / (1 - a)

    def v_coefficients(self, t: float) -> tuple[float, float]:
        """v = alpha eps - sigma z_0 (Salimans & Ho 2022) as (a, b) of v = a z_0 + b eps."""
        return -self.sigma(t), self.alpha(t)

    def add_noise(self, z0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z_t = sqrt(alpha_bar_t) z_0 + sqrt(1 - alpha_bar_t) eps (DDPM Eq. 4)."""
        a = broadcast(self.alpha_bar_at(t), z0)
        return a.sqrt() * z0 + (1 - a).sqrt() * eps

    def training_times(self, batch: int, generator: torch.Generator | None) -> torch.Tensor:
        """t ~ U{0 .. T-1} (on the CPU, like the generator)."""
        return torch.randint(0, self.T, (batch,), generator=generator)

    def model_time(self, t: torch.Tensor | float, batch: int | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
        """The integer timestep the network is fed (a batch of one t: on `device`)."""
        if batch is not None:
            return torch.full((batch,), int(t), dtype=torch.long, device=device)
        return torch.as_tensor(t, device=device)


@dataclass(frozen=True)
class RectifiedFlow:
    """Rectified flow / flow matching: alpha = 1 - t, sigma = t, t ~ U(0, 1). `T` only scales
    the time fed to the network, t * T, so that its sinusoidal embedding spans the range of
    the DDPM models."""

    T: int
    name = "rectified_flow"
    discrete = False

    @property
    def t_min(self) -> float:
        return 0.0

    @property
    def t_max(self) -> float:
        return 1.0

    def alpha(self, t: float) -> float:
        return 1.0 - t

    def sigma(self, t: float) -> float:
        return t

    def v_coefficients(self, t: float) -> tuple[float, float]:
        """v = alpha'(t) z_0 + sigma'(t) eps = eps - z_0, the flow-matching velocity (Eq. 7)."""
        return -1.0, 1.0

    def add_noise(self, z0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z_t = (1 - t) z_0 + t eps."""
        t = broadcast(t, z0)
        return (1 - t) * z0 + t * eps

    def training_times(self, batch: int, generator: torch.Generator | None) -> torch.Tensor:
        """t ~ U(0, 1) in float64 (on the CPU, like the generator)."""
        return torch.rand(batch, generator=generator, dtype=torch.float64)

    def model_time(self, t: torch.Tensor | float, batch: int | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
        """t * T in float32, computed in float64 (a batch of one t: on `device`)."""
        if batch is not None:
            times = torch.full((batch,), float(t), dtype=torch.float64, device=device)
        else:
            times = torch.as_tensor(t, dtype=torch.float64, device=device)
        return (times * self.T).float()


def ddpm(beta_schedule: str, T: int) -> DDPM:
    return DDPM.create(beta_schedule, T)


def rectified_flow(beta_schedule: str, T: int) -> RectifiedFlow:
    """(beta_schedule does not apply to the flow.)"""
    return RectifiedFlow(T)


def broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample values (B,) as (B, 1, 1, ...) in `like`'s dtype."""
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def noise_level(process: Process, t: float) -> float:
    """sigma_t / alpha_t of Eq. 8 (EDM's sigma); infinite where alpha_t = 0."""
    alpha = process.alpha(t)
    return process.sigma(t) / alpha if alpha > 0 else float("inf")


def time_at_noise_level(process: Process, level: float) -> float:
    """The time whose noise level sigma_t / alpha_t is `level` (it rises with t): the nearest
    timestep (log scale) for a discrete process, else found by bisection."""
    lo, hi = process.t_min, process.t_max
    if process.discrete:
        steps = range(max(int(lo) + 1, 1), int(hi) + 1)
        return float(min(steps, key=lambda t: abs(math.log(noise_level(process, t) / level))))
    for _ in range(60):
        middle = (lo + hi) / 2
        lo, hi = (middle, hi) if noise_level(process, middle) < level else (lo, middle)
    return round((lo + hi) / 2, 12)
