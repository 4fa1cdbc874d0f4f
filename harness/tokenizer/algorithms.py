"""Algorithms 1 (p != 0) and 2 (p = 0) of seed 002, shared by encoding and decoding.

The loop is the same in both directions; only the `Chooser` differs: encoding picks each
step's indices by Eq. 14 from the residual x - x0, decoding reads them from the token list.
The states are computed by the same operations either way, so decoding the tokens rebuilds
the encoder's reconstruction bit for bit. Nothing but the current state and the token list
is kept across steps (codebooks are regenerated from (seed, step)).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol

import torch

from harness.config import GDDCMConfig
from harness.diffusion.objectives import ode_step, predict_x0_eps
from harness.diffusion.processes import Process
from harness.diffusion.samplers import Denoiser
from harness.tokenizer.codebook import gather, select
from harness.tokenizer.steps import back_trace, ddcm_step
from harness.tokenizer.times import Times
from harness.tokenizer.timesteps import descent_times, fixed_point_schedule, ode_times


class Chooser(Protocol):
    def __call__(self, step: int, x0: torch.Tensor) -> torch.Tensor:
        """eps_c of step `step` (the data's shape)."""
        ...


@dataclass
class SelectTokens:
    """Encoding: Eq. 14 on the residual target - x0; remembers the indices (int32)."""

    target: torch.Tensor
    seed: int
    K: int
    grid: int
    tokens: list[torch.Tensor] = field(default_factory=list)

    def __call__(self, step: int, x0: torch.Tensor) -> torch.Tensor:
        index, eps_c = select(self.target - x0, self.seed, step, self.K, self.grid)
        self.tokens.append(index.to(torch.int32))
        return eps_c


@dataclass
class ReplayTokens:
    """Decoding: step `step`'s noise from a (B, steps, g*g) token array, on x0's device."""

    tokens: torch.Tensor
    seed: int
    K: int

    def __call__(self, step: int, x0: torch.Tensor) -> torch.Tensor:
        return gather(self.tokens[:, step].long(), self.seed, step, self.K, tuple(x0.shape)
                      ).to(x0.device)


@dataclass(frozen=True)
class Tokenizer:
    """One trained denoiser, the process it was trained on, what it predicts, and a
    GDDCMConfig with resolved times."""

    denoiser: Denoiser
    process: Process
    prediction: str
    config: GDDCMConfig
    times: Times

    def predict(self, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, eps) from the model output by Eq. 16."""
        output = self.denoiser(x, self.process.model_time(t, len(x), x.device))
        return predict_x0_eps(self.process, self.prediction, output.float(), x, t)

    def start_time(self) -> float:
        return self.times.t_s if self.config.p == 0 else self.times.t_r

    def token_count(self) -> int:
        """Tokens per grid cell, init token excluded."""
        if self.config.p == 0:
            return sum(r for _, r in self._fixed_point())
        return self.config.N

    def _fixed_point(self) -> list[tuple[float, int]]:
        c, t = self.config, self.times
        return fixed_point_schedule(c.P, c.N, t.dt_min, t.dt_max, c.sigma_max, c.rho,
                                    self.process.discrete)

    @torch.inference_mode()
    def run(self, x: torch.Tensor, choose: Chooser) -> torch.Tensor:
        """From the initial state x at `start_time()` to the reconstruction."""
        if self.config.p == 0:
            x, t = self._algorithm2(x, choose)
        else:
            x, t = self._algorithm1(x, choose)
        return self._solve_ode(x, t)

    def _algorithm1(self, x: torch.Tensor, choose: Chooser) -> tuple[torch.Tensor, float]:
        """Algorithm 1: N de-noise + back-trace steps of w(k) from T_r; each goes to
        t - dt with dt = w(k) / p, then back to t - p dt = t - w(k). Discrete time: Eq. 11."""
        process, p = self.process, self.config.p
        times = descent_times(self.times.t_r, self.times.t_end, self.config.N, process.discrete)
        for step, (t, t_next) in enumerate(itertools.pairwise(times)):
            x0, eps = self.predict(x, t)
            eps_c = choose(step, x0)
            if process.discrete:
                x = ddcm_step(process, x0, eps, eps_c, t, t_next, p)
            else:
                t_far = max(t - (t - t_next) / p, process.t_min)
                x = back_trace(process, x0, eps, eps_c, t_far, t_next)
        return x, times[-1]

    def _algorithm2(self, x: torch.Tensor, choose: Chooser) -> tuple[torch.Tensor, float]:
        """Algorithm 2: stay at T_s; per interval k, r(k) steps of de-noise to T_s - dt(k)
        (Eq. 18) and back-trace to T_s (Eq. 22 with p = 0)."""
        process, t = self.process, self.times.t_s
        step = 0
        for dt, count in self._fixed_point():
            t_far = max(t - dt, process.t_min)
            for _ in range(count):
                x0, eps = self.predict(x, t)
                eps_c = choose(step, x0)
                x = back_trace(process, x0, eps, eps_c, t_far, t)
                step += 1
        return x, t

    def _solve_ode(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """sample(x_t, t): Eq. 18 steps to the clean end (DDIM, eta = 0, in discrete time)."""
        if t <= self.process.t_min:
            return x
        times = ode_times(t, self.process.t_min, self.config.final_steps,
                          self.process.discrete)
        for t_now, t_next in itertools.pairwise(times):
            x0, eps = self.predict(x, t_now)
            x = ode_step(self.process, x0, eps, t_next)
        return x
