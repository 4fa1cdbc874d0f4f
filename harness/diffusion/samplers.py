"""Samplers: each owns its timesteps and its `step`; the model is passed in, never stored.

DDIM (Song et al. 2021; DESIGN section 4, seed 000 Sec. 2.3):
  z_{t'} = sqrt(a_{t'}) x0_hat + sqrt(1 - a_{t'} - sigma_t^2) eps_hat + sigma_t eps,
  sigma_t = eta sqrt((1 - a_{t'}) / (1 - a_t)) sqrt(1 - a_t / a_{t'}),
with t' the previous of S evenly spaced steps and a = alpha_bar. eta = 0 is deterministic;
eta = 1 with S = T is DDPM's ancestral sampler.
DDPM ancestral sampling (Ho et al. 2020, Eq. 6-7) is kept as the reference.
Euler (rectified flow, seed 002 Eq. 7): the probability-flow ODE from t = 1 to 0 on S equal
steps, each the Eq. 18 step z_{t'} = alpha(t') x0_hat + sigma(t') eps_hat, which on the
flow's marginal is z_t + (t' - t) v_hat.

Every sampler has `timesteps()` (noisiest first), `clean_time` (the time after the last
step), `model_time` (what the network is fed) and `step`; `sample` runs any of them.
Noise is drawn from the CPU generator and moved to the device of z_t, so a seed gives the
same draws on every device.
Samplers are built by name (SampleConfig.sampler) from `harness.diffusion.SAMPLERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from harness.diffusion import SAMPLERS
from harness.diffusion.objectives import ode_step, predict_x0_eps, to_x0_eps
from harness.diffusion.processes import DDPM, Process, RectifiedFlow

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z_t, model time) -> output


def noise_like(z: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, I) in z's shape and dtype, drawn on the CPU generator, on z's device."""
    return torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)


@dataclass(frozen=True)
class DDIMSampler:
    process: DDPM
    steps: int  # S
    eta: float = 0.0
    prediction: str = "eps"
    clean_time: ClassVar[int] = -1

    def model_time(self, t: float, batch: int, device: torch.device | str | None = None
                   ) -> torch.Tensor:
        return self.process.model_time(t, batch, device)

    def timesteps(self) -> list[int]:
        """S evenly spaced steps of 0..T-1, from the noisiest to the cleanest."""
        T = self.process.T
        if not 1 <= self.steps <= T:
            raise ValueError(f"DDIM steps must be in 1..T={T}, got {self.steps}")
        grid = torch.linspace(0, T - 1, self.steps, dtype=torch.float64).round().long()
        return sorted(set(grid.tolist()), reverse=True)

    def sigma(self, t: int, t_prev: int) -> float:
        a_t = float(self.process.alpha_bar_at(t))
        a_prev = float(self.process.alpha_bar_at(t_prev))
        return self.eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5

    def step(self, output: torch.Tensor, t: int, t_prev: int, z_t: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """z_t -> z_{t_prev} by the DDIM update; t_prev = -1 ends at the data."""
        a_t = self.process.alpha_bar_at(t, z_t.device).to(z_t.dtype)
        a_prev = self.process.alpha_bar_at(t_prev, z_t.device).to(z_t.dtype)
        x0, eps = to_x0_eps(self.prediction, output, z_t, a_t.sqrt(), (1 - a_t).sqrt())
        sigma = self.sigma(t, t_prev)
        z_prev = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
        if sigma > 0:
            z_prev = z_prev + sigma * noise_like(z_t, generator)
        return z_prev


@dataclass(frozen=True)
class DDPMSampler:
    process: DDPM
    prediction: str = "eps"
    clean_time: ClassVar[int] = -1

    def model_time(self, t: float, batch: int, device: torch.device | str | None = None
                   ) -> torch.Tensor:
        return self.process.model_time(t, batch, device)

    def timesteps(self) -> list[int]:
        return list(range(self.process.T - 1, -1, -1))

    def posterior_variance(self, t: int) -> float:
        """beta_tilde_t = (1 - a_{t-1}) / (1 - a_t) beta_t (DDPM Eq. 7)."""
        a_t = float(self.process.alpha_bar_at(t))
        a_prev = float(self.process.alpha_bar_at(t - 1))
        return (1 - a_prev) / (1 - a_t) * float(self.process.betas[t])

    def step(self, output: torch.Tensor, t: int, t_prev: int, z_t: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample q(z_{t-1} | z_t, x0_hat) (DDPM Eq. 6-7)."""
        assert t_prev == t - 1, "DDPM steps one timestep at a time"
        a_t = float(self.process.alpha_bar_at(t))
        a_prev = float(self.process.alpha_bar_at(t_prev))
        beta = float(self.process.betas[t])
        a = torch.tensor(a_t, dtype=z_t.dtype, device=z_t.device)
        x0, _ = to_x0_eps(self.prediction, output, z_t, a.sqrt(), (1 - a).sqrt())
        mean = (a_prev**0.5 * beta / (1 - a_t)) * x0 + ((1 - beta) ** 0.5 * (1 - a_prev) /
                                                        (1 - a_t)) * z_t
        if t == 0:
            return mean
        return mean + self.posterior_variance(t) ** 0.5 * noise_like(z_t, generator)


@dataclass(frozen=True)
class EulerSampler:
    """Euler steps of the rectified-flow ODE (seed 002 Eq. 7, 18) from t = 1 to 0."""

    process: RectifiedFlow
    steps: int  # S
    prediction: str = "v"
    clean_time: ClassVar[float] = 0.0

    def timesteps(self) -> list[float]:
        """t_k = 1 - k / S for k = 0 .. S-1 (the step from t_{S-1} ends at clean_time 0)."""
        if self.steps < 1:
            raise ValueError(f"Euler steps must be >= 1, got {self.steps}")
        return [1.0 - k / self.steps for k in range(self.steps)]

    def model_time(self, t: float, batch: int, device: torch.device | str | None = None
                   ) -> torch.Tensor:
        return self.process.model_time(t, batch, device)

    def step(self, output: torch.Tensor, t: float, t_prev: float, z_t: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """z_{t'} = alpha(t') x0_hat + sigma(t') eps_hat (deterministic; generator unused)."""
        x0, eps = predict_x0_eps(self.process, self.prediction, output, z_t, t)
        return ode_step(self.process, x0, eps, t_prev)


Sampler = DDIMSampler | DDPMSampler | EulerSampler
SamplerFactory = Callable[[Process, str, int, float], Sampler]  # process, prediction, S, eta


def ddim(process: Process, prediction: str, steps: int, eta: float) -> Sampler:
    """DDIM on DDPM; on rectified flow DDIM with eta = 0 is the Euler step of its ODE."""
    if isinstance(process, RectifiedFlow):
        if eta != 0:
            raise ValueError("rectified_flow samples with the deterministic Euler ODE: "
                             "use eta 0")
        return EulerSampler(process, steps, prediction)
    assert isinstance(process, DDPM), process
    return DDIMSampler(process, steps, eta, prediction)


def ddpm(process: Process, prediction: str, steps: int, eta: float) -> Sampler:
    if not isinstance(process, DDPM):
        raise ValueError(f"the ancestral DDPM sampler needs the ddpm process, not "
                         f"{process.name}")
    return DDPMSampler(process, prediction)


def make_sampler(name: str, process: Process, prediction: str, steps: int, eta: float = 0.0
                 ) -> Sampler:
    """The sampler `name` (SampleConfig.sampler) for a model trained on `process`."""
    if name not in SAMPLERS.names():
        raise ValueError(f"unknown sampler {name!r}; expected one of {SAMPLERS.names()}")
    factory: SamplerFactory = SAMPLERS.builder(name)
    return factory(process, prediction, steps, eta)


@torch.inference_mode()
def sample(model: Denoiser, sampler: Sampler, shape: tuple[int, ...],
           generator: torch.Generator | None = None, z_T: torch.Tensor | None = None,
           device: torch.device | str | None = None) -> torch.Tensor:
    """Run the reverse chain from z_T (default: N(0, I) noise from the CPU generator) to z_0
    on `device` (default: z_T's, else the CPU)."""
    z = torch.randn(shape, generator=generator) if z_T is None else z_T
    z = z.to(device) if device is not None else z
    steps = sampler.timesteps()
    for t, t_prev in zip(steps, [*steps[1:], sampler.clean_time], strict=True):
        output = model(z, sampler.model_time(t, shape[0], z.device))
        z = sampler.step(output, t, t_prev, z, generator)
    return z
