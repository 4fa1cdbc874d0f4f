"""What the denoiser predicts (eps, v or x0), conversions between them, and the loss.

With z_t = sqrt(a) z_0 + sqrt(1 - a) eps and a = alpha_bar_t:
  eps-prediction  L = E ||eps - eps_theta(z_t, t)||^2          (seed 000 Sec. 2.2, 001 Eq. 2)
  v-prediction    v = sqrt(a) eps - sqrt(1 - a) z_0            (Salimans & Ho 2022)
  x0-prediction   the model outputs z_0 directly
Rectified flow (seed 002 Eq. 7): z_t = (1 - t) z_0 + t eps with t ~ U(0, 1); its v target is
the velocity eps - z_0 (eps and x0 targets as above).
Timestep weighting lambda_t (seed 003): uniform, or min-SNR-gamma (Hang et al. 2023), which
weighs each t by min(SNR_t, gamma) expressed in the units of the prediction target.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from harness.diffusion.schedules import NoiseSchedule, RectifiedFlow, _broadcast

PREDICTIONS = ("eps", "v", "x0")
WEIGHTINGS = ("uniform", "min_snr")


def target(prediction: str, z0: torch.Tensor, eps: torch.Tensor, a: torch.Tensor
           ) -> torch.Tensor:
    if prediction == "eps":
        return eps
    if prediction == "v":
        return a.sqrt() * eps - (1 - a).sqrt() * z0
    if prediction == "x0":
        return z0
    raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")


def to_x0_eps(prediction: str, output: torch.Tensor, z_t: torch.Tensor, a: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0_hat, eps_hat) from any model output, by inverting the forward marginal."""
    if prediction == "eps":
        eps = output
        x0 = (z_t - (1 - a).sqrt() * eps) / a.sqrt()
    elif prediction == "v":
        x0 = a.sqrt() * z_t - (1 - a).sqrt() * output
        eps = (1 - a).sqrt() * z_t + a.sqrt() * output
    elif prediction == "x0":
        x0 = output
        eps = (z_t - a.sqrt() * x0) / (1 - a).sqrt()
    else:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
    return x0, eps


def loss_weight(weighting: str, prediction: str, snr: torch.Tensor, gamma: float = 5.0
                ) -> torch.Tensor:
    """lambda_t; min-SNR-gamma divided by the weight each target already carries."""
    if weighting == "uniform":
        return torch.ones_like(snr)
    if weighting != "min_snr":
        raise ValueError(f"unknown weighting {weighting!r}; expected one of {WEIGHTINGS}")
    clipped = snr.clamp(max=gamma)
    return {"eps": clipped / snr, "v": clipped / (snr + 1), "x0": clipped}[prediction]


def diffusion_loss(model: torch.nn.Module, z0: torch.Tensor, schedule: NoiseSchedule,
                   prediction: str, weighting: str, generator: torch.Generator | None = None,
                   gamma: float = 5.0) -> torch.Tensor:
    """One Monte-Carlo estimate of the weighted objective with t ~ U{0..T-1}."""
    t = torch.randint(0, schedule.T, (len(z0),), generator=generator)
    eps = torch.randn(z0.shape, generator=generator, dtype=z0.dtype)
    a = _broadcast(schedule.alpha_bar_at(t), z0)
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * eps
    per_sample = (model(z_t, t) - target(prediction, z0, eps, a)).pow(2).flatten(1).mean(1)
    weight = loss_weight(weighting, prediction, schedule.snr(t), gamma).to(z0.dtype)
    return (weight * per_sample).mean()


def flow_target(prediction: str, z0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Regression target of rectified flow: the velocity v = eps - z_0 (seed 002 Eq. 7)."""
    if prediction == "v":
        return eps - z0
    if prediction in ("eps", "x0"):
        return eps if prediction == "eps" else z0
    raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")


def flow_matching_loss(model: torch.nn.Module, z0: torch.Tensor, flow: RectifiedFlow,
                       prediction: str, generator: torch.Generator | None = None
                       ) -> torch.Tensor:
    """E_{t, x, eps} ||o_theta(z_t, t) - target||^2 with t ~ U(0, 1) (seed 002 Eq. 7)."""
    t = torch.rand(len(z0), generator=generator, dtype=torch.float64)
    eps = torch.randn(z0.shape, generator=generator, dtype=z0.dtype)
    z_t = flow.add_noise(z0, eps, t)
    output = model(z_t, flow.model_time(t).to(z0.dtype))
    return (output - flow_target(prediction, z0, eps)).pow(2).mean()


Objective = Callable[[torch.nn.Module, torch.Tensor, torch.Generator], torch.Tensor]


def _ddpm_objective(beta_schedule: str, T: int, prediction: str, weighting: str,
                    gamma: float) -> Objective:
    schedule = NoiseSchedule.create(beta_schedule, T)
    return lambda model, z0, generator: diffusion_loss(model, z0, schedule, prediction,
                                                       weighting, generator, gamma)


def _flow_objective(beta_schedule: str, T: int, prediction: str, weighting: str,
                    gamma: float) -> Objective:
    if weighting != "uniform":
        raise ValueError(f"rectified flow trains with uniform weighting, got {weighting!r}")
    flow = RectifiedFlow(T)
    return lambda model, z0, generator: flow_matching_loss(model, z0, flow, prediction,
                                                           generator)


OBJECTIVES: dict[str, Callable[..., Objective]] = {"ddpm": _ddpm_objective,
                                                   "rectified_flow": _flow_objective}


def make_objective(process: str, beta_schedule: str, T: int, prediction: str,
                   weighting: str, gamma: float = 5.0) -> Objective:
    """The training loss of a forward process named in `OBJECTIVES`."""
    if process not in OBJECTIVES:
        raise ValueError(f"unknown process {process!r}; expected one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[process](beta_schedule, T, prediction, weighting, gamma)
