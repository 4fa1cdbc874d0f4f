"""The sampler zoo: diffusers schedulers as samplers of any stage 2 trained on the ddpm process.

Each scheduler is configured from the trained model's own schedule: num_train_timesteps = T,
trained_betas = the process's betas, prediction_type from stage2.prediction (eps -> epsilon,
v -> v_prediction, x0 -> sample); its timesteps and `step` are diffusers' code, unchanged.
`start()` sets up a fresh scheduler for every reverse chain, since the multistep solvers keep
a history of model outputs that two batches must not share.

dpmsolver++      DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++"), data prediction, midpoint
unipc            UniPC (Zhao et al. 2023), bh2, order 2 predictor-corrector
euler            Euler on the probability-flow ODE dx/dsigma = (x - x0_hat) / sigma, x = z /
                 sqrt(alpha_bar), sigma = sqrt((1 - alpha_bar) / alpha_bar) (Karras et al.
                 2022, Alg. 2 without churn)
euler_ancestral  Euler to sigma_down, then fresh noise of std sigma_up (k-diffusion)
heun             Heun's 2nd-order method (Karras et al. 2022, Alg. 1): 2 model calls per step,
                 Euler on the last, NFE 2S - 1
pndm             PLMS, PNDM's pseudo linear multistep (Liu et al. 2022) started with a
                 pseudo-improved-Euler step instead of Runge-Kutta, as in LDM: NFE S + 1

The sigma-space schedulers (euler, euler_ancestral, heun) interpolate sigma at fractional
timesteps: the model is fed those times as float32 and their `scale_model_input`, z itself.
Every scheduler ends at the data (alpha_bar = 1), like the harness's own samplers.
Timesteps: `timestep_spacing` linspace, leading and trailing are passed to diffusers (each
scheduler's own grid); quadratic (harness.diffusion.spacing) is passed as explicit timesteps
where `set_timesteps` takes them (SAMPLER_SPACINGS in harness.diffusion lists the others).
Noise: diffusers draws it with randn_tensor, on the CPU when handed a CPU generator, then moves
it to the sample's device; the chain always hands it one (the global CPU generator when none
is given), so a seed gives the same draws on every device, as the harness's samplers do.
A prediction a scheduler does not take, or takes wrongly, is handed to it as the eps it implies
at the step's own z and noise level: PNDM stores raw outputs and converts their combination
with the sample and time of a later step, right for eps only (its own v_prediction misses the
mean of Gaussian data, tests/diffusion/test_diffusers_samplers.py); Euler ancestral has no x0.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import torch

from harness.diffusion import SAMPLER_SPACINGS, SPACINGS
from harness.diffusion.objectives import to_x0_eps
from harness.diffusion.processes import DDPM, Process
from harness.diffusion.samplers import Sampler
from harness.diffusion.spacing import quadratic_timesteps

PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}


@dataclass(frozen=True)
class Scheduler:
    """A diffusers scheduler class and its settings beyond the model's schedule."""

    cls: str
    options: dict[str, Any] = field(default_factory=dict)
    predictions: tuple[str, ...] = ("eps", "v", "x0")  # passed on as its prediction_type
    sigma_space: bool = False  # its sample is x = z / sqrt(alpha_bar)


SCHEDULERS = {
    "dpmsolver++": Scheduler("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "unipc": Scheduler("UniPCMultistepScheduler"),
    "euler": Scheduler("EulerDiscreteScheduler", sigma_space=True),
    "euler_ancestral": Scheduler("EulerAncestralDiscreteScheduler", predictions=("eps", "v"),
                                 sigma_space=True),
    "heun": Scheduler("HeunDiscreteScheduler", sigma_space=True),
    "pndm": Scheduler("PNDMScheduler", {"skip_prk_steps": True, "set_alpha_to_one": True},
                      predictions=("eps",)),
}


def scheduler_class(name: str) -> type:
    return getattr(importlib.import_module("diffusers"), SCHEDULERS[name].cls)


@dataclass(frozen=True)
class SchedulerSampler:
    """The zoo sampler `name` with S steps for a model trained on `process`."""

    name: str
    process: DDPM
    steps: int  # S, the scheduler's steps
    prediction: str = "eps"
    spacing: str = "linspace"

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= self.process.T:
            raise ValueError(f"{self.name} steps must be in 1..T={self.process.T}, "
                             f"got {self.steps}")
        allowed = SAMPLER_SPACINGS.get(self.name, SPACINGS)
        if self.spacing not in allowed:
            raise ValueError(f"sample.timestep_spacing {self.spacing} is not one {self.name} "
                             f"takes ({SCHEDULERS[self.name].cls}): use {', '.join(allowed)}")

    def scheduler(self) -> Any:
        """A fresh diffusers scheduler with its timesteps set."""
        entry = SCHEDULERS[self.name]
        native = self.prediction in entry.predictions  # else SchedulerChain hands it eps
        prediction = PREDICTION_TYPES[self.prediction if native else "eps"]
        custom = self.spacing == "quadratic"
        scheduler = scheduler_class(self.name)(
            num_train_timesteps=self.process.T, trained_betas=self.process.betas.numpy(),
            prediction_type=prediction, timestep_spacing="linspace" if custom else self.spacing,
            **entry.options)
        if custom:
            scheduler.set_timesteps(
                timesteps=quadratic_timesteps(self.process.T, self.steps)[::-1])
        else:
            scheduler.set_timesteps(self.steps)
        return scheduler

    def timesteps(self) -> list[Any]:
        return self.scheduler().timesteps.tolist()

    @property
    def nfe(self) -> int:
        """One model call per scheduler timestep (Heun's and PLMS's inner times included)."""
        return len(self.timesteps())

    def start(self) -> SchedulerChain:
        entry = SCHEDULERS[self.name]
        converted = None if self.prediction in entry.predictions else self.prediction
        return SchedulerChain(self.scheduler(), converted, entry.sigma_space)


@dataclass
class SchedulerChain:
    """One reverse chain of a diffusers scheduler; the timesteps are the scheduler's own (a
    step's t_prev is unused: the scheduler knows where it steps to)."""

    scheduler: Any
    as_eps: str | None = None  # the prediction handed to the scheduler as eps
    sigma_space: bool = False
    clean_time: ClassVar[int] = -1

    def __post_init__(self) -> None:
        self.takes_generator = "generator" in inspect.signature(self.scheduler.step).parameters

    @property
    def init_noise_sigma(self) -> float:
        return float(self.scheduler.init_noise_sigma)

    def timesteps(self) -> list[Any]:
        return self.scheduler.timesteps.tolist()

    def model_time(self, t: int | float, batch: int, device: torch.device | str | None = None
                   ) -> torch.Tensor:
        """The scheduler's timestep, fractional ones as float32."""
        dtype = torch.float32 if isinstance(t, float) else torch.long
        return torch.full((batch,), t, dtype=dtype, device=device)

    def scale_model_input(self, z: torch.Tensor, t: int | float) -> torch.Tensor:
        return self.scheduler.scale_model_input(z, t)

    def step(self, output: torch.Tensor, t: int | float, t_prev: Any, z_t: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        output = output.to(z_t.dtype)  # (an autocast output would pull the chain to its dtype)
        if self.as_eps is not None:
            output = self.eps(output, t, z_t)
        options = {}
        if self.takes_generator:
            options["generator"] = generator if generator is not None else torch.default_generator
        return self.scheduler.step(output, t, z_t, return_dict=False, **options)[0]

    def eps(self, output: torch.Tensor, t: int | float, z_t: torch.Tensor) -> torch.Tensor:
        """The eps_hat of the model's output at this step: alpha_bar = 1 / (1 + sigma^2) and
        the model's input z = x sqrt(alpha_bar) for a sigma-space sample x."""
        if self.sigma_space:
            a = 1 / (1 + self.scheduler.sigmas[self.scheduler.step_index] ** 2)
            z_t = z_t * a.sqrt()
        else:
            a = self.scheduler.alphas_cumprod[int(t)]
        assert self.as_eps is not None
        return to_x0_eps(self.as_eps, output, z_t, a.sqrt(), (1 - a).sqrt())[1]


def scheduler_sampler(name: str, process: Process, prediction: str, steps: int, eta: float,
                      spacing: str = "linspace") -> Sampler:
    """The zoo sampler `name` (eta does not apply)."""
    if not isinstance(process, DDPM):
        raise ValueError(f"sample.sampler {name} runs on the ddpm process's betas, not "
                         f"{process.name}")
    return SchedulerSampler(name, process, steps, prediction, spacing)


dpmsolver_pp = partial(scheduler_sampler, "dpmsolver++")
unipc = partial(scheduler_sampler, "unipc")
euler = partial(scheduler_sampler, "euler")
euler_ancestral = partial(scheduler_sampler, "euler_ancestral")
heun = partial(scheduler_sampler, "heun")
pndm = partial(scheduler_sampler, "pndm")
