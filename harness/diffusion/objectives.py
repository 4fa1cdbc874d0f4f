"""What the denoiser predicts (eps, v or x0), the one conversion of its output into (x0, eps),
and the training losses of each process.

With a process's marginal z_t = alpha z_0 + sigma eps (harness.diffusion.processes):
  eps-prediction  L = E ||eps - eps_theta(z_t, t)||^2          (seed 000 Sec. 2.2, 001 Eq. 2)
  v-prediction    v = a z_0 + b eps with the process's (a, b): alpha eps - sigma z_0 for DDPM
                  (Salimans & Ho 2022), the velocity eps - z_0 for rectified flow (002 Eq. 7)
  x0-prediction   the model outputs z_0 directly
Any output o = a z_0 + b eps is solved with Eq. 8 for (x0, eps) (seed 002 Eq. 16).
Timestep weighting lambda_t (seed 003): uniform, or min-SNR-gamma (Hang et al. 2023), which
weighs each t by min(SNR_t, gamma) expressed in the units of the prediction target.
The losses draw t and eps from the CPU generator and move them to z0's device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from harness.diffusion import LOSSES
from harness.diffusion.processes import DDPM, Process, RectifiedFlow, broadcast

PREDICTIONS = ("eps", "v", "x0")
WEIGHTINGS = ("uniform", "min_snr")
Scalar = float | torch.Tensor


def _check(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")


def to_x0_eps(prediction: str, output: torch.Tensor, z_t: torch.Tensor, alpha: Scalar,
              sigma: Scalar, v_coefficients: tuple[Scalar, Scalar] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0_hat, eps_hat) from any model output at a time where z_t = alpha x0 + sigma eps.

    eps and x0 are inverted directly; v = a x0 + b eps by seed 002 Eq. 16, det = b alpha -
    a sigma: x0 = (b z_t - sigma v) / det, eps = (alpha v - a z_t) / det. Without
    `v_coefficients` the process is variance preserving, (a, b) = (-sigma, alpha), det = 1.
    """
    _check(prediction)
    if prediction == "eps":
        return (z_t - sigma * output) / alpha, output
    if prediction == "x0":
        return output, (z_t - alpha * output) / sigma
    if v_coefficients is None:
        return alpha * z_t - sigma * output, sigma * z_t + alpha * output
    a, b = v_coefficients
    det = b * alpha - a * sigma
    return (b * z_t - sigma * output) / det, (alpha * output - a * z_t) / det


def predict_x0_eps(process: Process, prediction: str, output: torch.Tensor,
                   z_t: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`to_x0_eps` with the process's float64 alpha(t), sigma(t) and v coefficients."""
    return to_x0_eps(prediction, output, z_t, process.alpha(t), process.sigma(t),
                     process.v_coefficients(t))


def ode_step(process: Process, x0: torch.Tensor, eps: torch.Tensor, t_next: float
             ) -> torch.Tensor:
    """Seed 002 Eq. 18: z_{t_next} = alpha(t_next) x0 + sigma(t_next) eps, one Euler step of
    the probability-flow ODE to O(dt^2) (Theorem 1; DDIM with eta = 0 in discrete time)."""
    return process.alpha(t_next) * x0 + process.sigma(t_next) * eps


def target(prediction: str, z0: torch.Tensor, eps: torch.Tensor,
           v_coefficients: tuple[Scalar, Scalar]) -> torch.Tensor:
    """The regression target of a prediction type; v = a z0 + b eps."""
    _check(prediction)
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return z0
    a, b = v_coefficients
    return b * eps + a * z0


def loss_weight(weighting: str, prediction: str, snr: torch.Tensor, gamma: float = 5.0
                ) -> torch.Tensor:
    """lambda_t; min-SNR-gamma divided by the weight each target already carries."""
    if weighting == "uniform":
        return torch.ones_like(snr)
    if weighting != "min_snr":
        raise ValueError(f"unknown weighting {weighting!r}; expected one of {WEIGHTINGS}")
    clipped = snr.clamp(max=gamma)
    return {"eps": clipped / snr, "v": clipped / (snr + 1), "x0": clipped}[prediction]


def draw_times_and_noise(process: Process, z0: torch.Tensor, generator: torch.Generator | None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """t ~ the process's training times, then eps ~ N(0, I) like z0, both drawn on the CPU
    generator in this order and moved to z0's device."""
    t = process.training_times(len(z0), generator)
    eps = torch.randn(z0.shape, generator=generator, dtype=z0.dtype)
    return t.to(z0.device), eps.to(z0.device)


def ddpm_loss(model: torch.nn.Module, z0: torch.Tensor, process: DDPM, prediction: str,
              weighting: str, generator: torch.Generator | None = None, gamma: float = 5.0
              ) -> torch.Tensor:
    """One Monte-Carlo estimate of the weighted objective with t ~ U{0..T-1}."""
    t, eps = draw_times_and_noise(process, z0, generator)
    z_t = process.add_noise(z0, eps, t)
    a = broadcast(process.alpha_bar_at(t), z0)
    goal = target(prediction, z0, eps, (-(1 - a).sqrt(), a.sqrt()))
    per_sample = (model(z_t, process.model_time(t)) - goal).pow(2).flatten(1).mean(1)
    weight = loss_weight(weighting, prediction, process.snr(t), gamma).to(z0.dtype)
    return (weight * per_sample).mean()


def flow_matching_loss(model: torch.nn.Module, z0: torch.Tensor, process: RectifiedFlow,
                       prediction: str, weighting: str, generator: torch.Generator | None = None,
                       gamma: float = 5.0) -> torch.Tensor:
    """E_{t, x, eps} ||o_theta(z_t, t) - target||^2 with t ~ U(0, 1) (seed 002 Eq. 7);
    uniform weighting only."""
    if weighting != "uniform":
        raise ValueError(f"rectified flow trains with uniform weighting, got {weighting!r}")
    t, eps = draw_times_and_noise(process, z0, generator)
    z_t = process.add_noise(z0, eps, t)
    output = model(z_t, process.model_time(t))
    goal = target(prediction, z0, eps, process.v_coefficients(0.0))
    return (output - goal).pow(2).mean()


Objective = Callable[[torch.nn.Module, torch.Tensor, torch.Generator], torch.Tensor]


def make_objective(process: Process, prediction: str, weighting: str, gamma: float = 5.0
                   ) -> Objective:
    """The training loss registered for `process` (harness.diffusion.LOSSES) as
    (model, z0, generator) -> L."""
    loss = LOSSES.builder(process.name)
    return lambda model, z0, generator: loss(model, z0, process, prediction, weighting,
                                             generator, gamma)
