"""The update equations of one gDDCM step (seed 002 Sec. 3.1.1 and 3.1.4).

x_t -> x_{t-dt} (ODE de-noise, Eq. 18: harness.diffusion.objectives.ode_step) -> x_{t-p dt}
(back-trace with a codebook noise, Eq. 22); Eq. 11 is the discrete-time DDPM form of the
same step.
"""

from __future__ import annotations

import torch

from harness.diffusion.processes import Process


def back_trace(process: Process, x0: torch.Tensor, eps: torch.Tensor, eps_c: torch.Tensor,
               t_far: float, t_next: float) -> torch.Tensor:
    """Eq. 22 with t_far = t - dt and t_next = t - p dt:

    x_{t-p dt} = alpha(t-p dt) x0 + sigma(t-dt) eps + sqrt(sigma(t-p dt)^2 - sigma(t-dt)^2) eps_c
    """
    sigma_far, sigma_next = process.sigma(t_far), process.sigma(t_next)
    added = max(sigma_next**2 - sigma_far**2, 0.0) ** 0.5
    return process.alpha(t_next) * x0 + sigma_far * eps + added * eps_c


def ddcm_sigma(process: Process, t: float, t_prev: float, p: float) -> float:
    """sigma_bar of Eq. 11: 2p times DDPM's posterior std
    (sigma_prev / sigma_t) sqrt(1 - (alpha_t / alpha_prev)^2), capped at sigma_prev.

    Seed 002 prints the factor as p / 2, which gives a quarter of DDPM's noise at p = 0.5,
    against its own statement (and DESIGN section 5) that p = 0.5 is DDCM; 2p keeps the
    printed form linear in p and makes p = 0.5 exactly DDCM (DDPM ancestral sampling with
    the noise drawn from the codebook).
    """
    sigma_t, sigma_prev = process.sigma(t), process.sigma(t_prev)
    alpha_t, alpha_prev = process.alpha(t), process.alpha(t_prev)
    ddpm = sigma_prev / sigma_t * max(1.0 - (alpha_t / alpha_prev) ** 2, 0.0) ** 0.5
    return min(2.0 * p * ddpm, sigma_prev)


def ddcm_step(process: Process, x0: torch.Tensor, eps: torch.Tensor, eps_c: torch.Tensor,
              t: float, t_prev: float, p: float) -> torch.Tensor:
    """Eq. 11 (the DDIM form): x_prev = alpha_prev x0 + sqrt(sigma_prev^2 - sigma_bar^2) eps
    + sigma_bar eps_c, which is Eq. 11's (alpha_prev / alpha_t)(x_t - (...) eps) rewritten
    with x_t = alpha_t x0 + sigma_t eps."""
    sigma_bar = ddcm_sigma(process, t, t_prev, p)
    kept = max(process.sigma(t_prev) ** 2 - sigma_bar**2, 0.0) ** 0.5
    return process.alpha(t_prev) * x0 + kept * eps + sigma_bar * eps_c
