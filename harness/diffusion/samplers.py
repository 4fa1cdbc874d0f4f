"""Samplers: each owns its timesteps and its `step`; the model is passed in, never stored.

DDIM (Song et al. 2021; DESIGN section 4, seed 000 Sec. 2.3):
  z_{t'} = sqrt(a_{t'}) x0_hat + sqrt(1 - a_{t'} - sigma_t^2) eps_hat + sigma_t eps,
  sigma_t = eta sqrt((1 - a_{t'}) / (1 - a_t)) sqrt(1 - a_t / a_{t'}),
with t' the previous of S steps (spaced by SampleConfig.timestep_spacing, harness.diffusion.
spacing) and a = alpha_bar. eta = 0 is deterministic; eta = 1 with S = T is DDPM's ancestral
sampler.
DDPM ancestral sampling (Ho et al. 2020, Eq. 6-7) is kept as the reference.
Euler (rectified flow, seed 002 Eq. 7): the probability-flow ODE from t = 1 to 0 on S equal
steps, each the Eq. 18 step z_{t'} = alpha(t') x0_hat + sigma(t') eps_hat, which on the
flow's marginal is z_t + (t' - t) v_hat.

A sampler (`Sampler`) owns its schedule: `timesteps()` (noisiest first), `nfe` (model calls
per sample) and `start()`, which gives the `Chain` that one call of `sample` runs: z_T scaled
by `init_noise_sigma`, then at each timestep one model call on `scale_model_input(z, t)` at
`model_time(t)` and a `step` (diffusers' scheduler interface; `clean_time` is the time after
the last step). The samplers here keep no state between steps: each is its own chain, with
unit z_T and z itself as the model input. The diffusers schedulers of harness.diffusion.zoo
keep a history and are set up afresh by `start()`.
Noise is drawn from the CPU generator and moved to the device of z_t, so a seed gives the
same draws on every device.
Samplers are built by name (SampleConfig.sampler) from `harness.diffusion.SAMPLERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch

from harness.diffusion import SAMPLERS
from harness.diffusion.objectives import ode_step, predict_x0_eps, to_x0_eps
from harness.diffusion.processes import DDPM, Process, RectifiedFlow
from harness.diffusion.spacing import spaced_timesteps

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z_t, model time) -> output


class Chain(Protocol):
    """One reverse chain, what `sample` runs."""

    clean_time: Any  # the time after the last step (the t_prev of the last `step`)

    @property
    def init_noise_sigma(self) -> float: ...  # the scale of z_T ~ N(0, I)
    def timesteps(self) -> list[Any]: ...
    def model_time(self, t: Any, batch: int, device: torch.device | str | None = None
                   ) -> torch.Tensor: ...
    def scale_model_input(self, z: torch.Tensor, t: Any) -> torch.Tensor: ...
    def step(self, output: torch.Tensor, t: Any, t_prev: Any, z_t: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor: ...


class Sampler(Protocol):
    """A sampler's schedule; `start()` gives a chain with fresh state for one `sample`."""

    @property
    def nfe(self) -> int: ...  # model calls per sample
    @property
    def steps(self) -> int: ...  # S, the sampler's steps
    def timesteps(self) -> list[Any]: ...
    def start(self) -> Chain: ...


class Stateless:
    """A sampler without state between steps is its own chain: unit z_T, z as the model
    input, one model call per timestep."""

    init_noise_sigma: ClassVar[float] = 1.0

    def timesteps(self) -> list[Any]:
        raise NotImplementedError

    def start(self) -> Stateless:
        return self

    def scale_model_input(self, z: torch.Tensor, t: Any) -> torch.Tensor:
        return z

    @property
    def nfe(self) -> int:
        return len(self.timesteps())


def noise_like(z: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, I) in z's shape and dtype, drawn on the CPU generator, on z's device."""
    return torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)


@dataclass(frozen=True)
class DDIMSampler(Stateless):
    process: DDPM
    steps: int  # S
    eta: float = 0.0
    prediction: str = "eps"
    spacing: str = "linspace"
    clean_time: ClassVar[int] = -1

    def model_time(self, t: float, batch: int, device: torch.device | str | None = None
                   ) -> torch.Tensor:
        return self.process.model_time(t, batch, device)

    def timesteps(self) -> list[int]:
        """S steps of 0..T-1 by the spacing (default: evenly spaced), noisiest first."""
        T = self.process.T
        if not 1 <= self.steps <= T:
            raise ValueError(f"DDIM steps must be in 1..T={T}, got {self.steps}")
        return spaced_timesteps(self.spacing, T, self.steps)

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
class DDPMSampler(Stateless):
    process: DDPM
    prediction: str = "eps"
    clean_time: ClassVar[int] = -1

    def model_time(self, t: float, batch: int, device: torch.device | str | None = None
                   ) -> torch.Tensor:
        return self.process.model_time(t, batch, device)

    @property
    def steps(self) -> int:
        """All T."""
        return self.process.T

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
class EulerSampler(Stateless):
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


# process, prediction, S, eta, timestep spacing -> sampler
SamplerFactory = Callable[[Process, str, int, float, str], Sampler]


def ddim(process: Process, prediction: str, steps: int, eta: float,
         spacing: str = "linspace") -> Sampler:
    """DDIM on DDPM; on rectified flow DDIM with eta = 0 is the Euler step of its ODE."""
    if isinstance(process, RectifiedFlow):
        if eta != 0:
            raise ValueError("rectified_flow samples with the deterministic Euler ODE: "
                             "use eta 0")
        if spacing != "linspace":
            raise ValueError("rectified_flow's Euler ODE takes S equal steps of t: use "
                             "sample.timestep_spacing linspace")
        return EulerSampler(process, steps, prediction)
    assert isinstance(process, DDPM), process
    return DDIMSampler(process, steps, eta, prediction, spacing)


def ddpm(process: Process, prediction: str, steps: int, eta: float,
         spacing: str = "linspace") -> Sampler:
    """All T steps, so neither S nor the spacing applies."""
    if not isinstance(process, DDPM):
        raise ValueError(f"the ancestral DDPM sampler needs the ddpm process, not "
                         f"{process.name}")
    return DDPMSampler(process, prediction)


def make_sampler(name: str, process: Process, prediction: str, steps: int, eta: float = 0.0,
                 spacing: str = "linspace") -> Sampler:
    """The sampler `name` (SampleConfig.sampler) for a model trained on `process`."""
    if name not in SAMPLERS.names():
        raise ValueError(f"unknown sampler {name!r}; expected one of {SAMPLERS.names()}")
    factory: SamplerFactory = SAMPLERS.builder(name)
    return factory(process, prediction, steps, eta, spacing)


def sampler_within_nfe(name: str, process: Process, prediction: str, nfe: int,
                       eta: float = 0.0, spacing: str = "linspace") -> Sampler:
    """The sampler `name` with the most steps S whose function evaluations stay within `nfe`
    (at most T steps on DDPM; at least one)."""
    most = min(nfe, process.T) if isinstance(process, DDPM) else nfe
    for steps in range(most, 1, -1):
        sampler = make_sampler(name, process, prediction, steps, eta, spacing)
        if sampler.nfe <= nfe:
            return sampler
    return make_sampler(name, process, prediction, 1, eta, spacing)


@torch.inference_mode()
def sample(model: Denoiser, sampler: Sampler, shape: tuple[int, ...],
           generator: torch.Generator | None = None, z_T: torch.Tensor | None = None,
           device: torch.device | str | None = None) -> torch.Tensor:
    """Run one reverse chain from z_T (default: N(0, I) noise from the CPU generator), scaled
    by the chain's init_noise_sigma, to z_0 on `device` (default: z_T's, else the CPU)."""
    chain = sampler.start()
    z = torch.randn(shape, generator=generator) if z_T is None else z_T
    z = z.to(device) if device is not None else z
    if chain.init_noise_sigma != 1.0:
        z = z * chain.init_noise_sigma
    steps = chain.timesteps()
    for t, t_prev in zip(steps, [*steps[1:], chain.clean_time], strict=True):
        output = model(chain.scale_model_input(z, t), chain.model_time(t, shape[0], z.device))
        z = chain.step(output, t, t_prev, z, generator)
    return z
