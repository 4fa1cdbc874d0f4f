"""The unified marginal x_t = alpha(t) x + sigma(t) eps (seed 002 Eq. 8) of each diffusion
variant the harness trains, and the solution of any model output for (x0, eps) (Eq. 16).

Seed 002 writes s(t) and Sigma(t) = s(t) sigma(t); here `alpha` is s and `sigma` is Sigma.
Times are in the model's own units: a step index 0..T-1 for discrete-time DDPM (-1 is the
clean end, as in `harness.diffusion.samplers`), t in [0, 1] for rectified flow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from harness.diffusion.schedules import NoiseSchedule, RectifiedFlow


class Marginal(Protocol):
    prediction: str
    discrete: bool  # True: times are integer steps and Eq. 11 is the update

    @property
    def t_min(self) -> float: ...  # the clean end
    @property
    def t_max(self) -> float: ...  # the largest time the model was trained on

    def alpha(self, t: float) -> float: ...
    def sigma(self, t: float) -> float: ...
    def output_coefficients(self, t: float) -> tuple[float, float]: ...
    def model_time(self, t: float, batch: int) -> torch.Tensor: ...


@dataclass(frozen=True)
class DDPMMarginal:
    """Discrete-time DDPM: alpha = sqrt(alpha_bar_t), sigma = sqrt(1 - alpha_bar_t)."""

    schedule: NoiseSchedule
    prediction: str = "eps"
    discrete: bool = True

    @property
    def t_min(self) -> float:
        return -1

    @property
    def t_max(self) -> float:
        return self.schedule.T - 1

    def alpha(self, t: float) -> float:
        return float(self.schedule.alpha_bar_at(int(t))) ** 0.5

    def sigma(self, t: float) -> float:
        return (1.0 - float(self.schedule.alpha_bar_at(int(t)))) ** 0.5

    def output_coefficients(self, t: float) -> tuple[float, float]:
        """(a_t, b_t) of o_t = a_t x + b_t eps (Eq. 16) for the harness's DDPM targets;
        v = alpha eps - sigma x (Salimans & Ho 2022)."""
        return _coefficients(self.prediction, -self.sigma(t), self.alpha(t))

    def model_time(self, t: float, batch: int) -> torch.Tensor:
        return torch.full((batch,), int(t), dtype=torch.long)


@dataclass(frozen=True)
class FlowMarginal:
    """Rectified flow (seed 002 Sec. 2.1.4): alpha = 1 - t, sigma = t, t in [0, 1]."""

    flow: RectifiedFlow
    prediction: str = "v"
    discrete: bool = False

    @property
    def t_min(self) -> float:
        return 0.0

    @property
    def t_max(self) -> float:
        return 1.0

    def alpha(self, t: float) -> float:
        return float(self.flow.alpha(torch.tensor(t, dtype=torch.float64)))

    def sigma(self, t: float) -> float:
        return float(self.flow.sigma(torch.tensor(t, dtype=torch.float64)))

    def output_coefficients(self, t: float) -> tuple[float, float]:
        """v = alpha'(t) x + sigma'(t) eps = eps - x, the flow-matching velocity (Eq. 7)."""
        return _coefficients(self.prediction, -1.0, 1.0)

    def model_time(self, t: float, batch: int) -> torch.Tensor:
        return self.flow.model_time(torch.full((batch,), float(t), dtype=torch.float64)).float()


def _coefficients(prediction: str, v_a: float, v_b: float) -> tuple[float, float]:
    table = {"eps": (0.0, 1.0), "x0": (1.0, 0.0), "v": (v_a, v_b)}
    if prediction not in table:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {sorted(table)}")
    return table[prediction]


def solve_x0_eps(marginal: Marginal, output: torch.Tensor, x_t: torch.Tensor, t: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 16 with Eq. 8: o = a x + b eps and x_t = alpha x + sigma eps, solved for (x, eps).

    det = b alpha - a sigma; x0 = (b x_t - sigma o) / det, eps = (alpha o - a x_t) / det.
    """
    a, b = marginal.output_coefficients(t)
    alpha, sigma = marginal.alpha(t), marginal.sigma(t)
    det = b * alpha - a * sigma
    return (b * x_t - sigma * output) / det, (alpha * output - a * x_t) / det
