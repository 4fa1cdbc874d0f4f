"""harness.tokenizer.steps: the back-trace of Eq. 22 and its discrete-time form, Eq. 11, against
the Gaussian closed forms and DDPM's / DDIM's own updates."""

from __future__ import annotations

import pytest
import torch

from harness.diffusion.objectives import ode_step, predict_x0_eps
from harness.diffusion.samplers import DDIMSampler, DDPMSampler
from harness.tokenizer.codebook import select
from harness.tokenizer.steps import back_trace, ddcm_sigma, ddcm_step
from tests.tokenizer.gaussian import (
    MU,
    SHAPE,
    S,
    Variant,
    ddpm,
    exact_output,
    flow,
    gaussian_data,
)


@pytest.mark.parametrize(("variant", "t", "dt"), [(flow(), 0.6, 0.004),
                                                  (ddpm(T=1000), 600, 2)], ids=["flow", "ddpm"])
@pytest.mark.parametrize("p", [0.0, 0.3, 0.5])
def test_eq22_keeps_the_marginal_of_eq8(variant: Variant, t: float, dt: float,
                                        p: float) -> None:
    process = variant.process
    x = gaussian_data(40000, shape=(2,))
    generator = torch.Generator().manual_seed(1)
    x_t = process.alpha(t) * x + process.sigma(t) * torch.randn(x.shape, generator=generator)
    x0, eps = predict_x0_eps(process, variant.prediction, exact_output(variant, x_t, t), x_t, t)
    t_next = t - p * dt
    if process.discrete:
        t_next = round(t_next)
    moved = back_trace(process, x0, eps, torch.randn(x.shape, generator=generator),
                       t - dt, t_next)
    alpha, sigma = process.alpha(t_next), process.sigma(t_next)
    assert moved.mean().item() == pytest.approx(alpha * MU, abs=0.01)
    assert moved.var().item() == pytest.approx(alpha**2 * S**2 + sigma**2, rel=0.02)


def test_p_half_in_discrete_time_is_the_ddcm_update() -> None:
    """DDCM: DDPM's ancestral step with its noise replaced by the chosen codebook row."""
    variant = ddpm("eps", T=200)
    process = variant.process
    sampler = DDPMSampler(process, "eps")
    x_t = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(2))
    target = gaussian_data(4, seed=3)
    for t in (150, 40, 1):
        output = exact_output(variant, x_t, t)
        x0, eps = predict_x0_eps(process, "eps", output, x_t, t)
        eps_c = select(target - x0, seed=0, step=t, K=256, grid=1)[1]
        noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(t))
        mean = sampler.step(output, t, t - 1, x_t, torch.Generator().manual_seed(t)) - (
            sampler.posterior_variance(t) ** 0.5 * noise)
        expected = mean + sampler.posterior_variance(t) ** 0.5 * eps_c
        got = ddcm_step(process, x0, eps, eps_c, t, t - 1, p=0.5)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        assert ddcm_sigma(process, t, t - 1, 0.5) == pytest.approx(
            sampler.posterior_variance(t) ** 0.5, rel=1e-9)


def test_p_zero_in_discrete_time_is_the_ode_step_that_ddim_takes() -> None:
    """Eq. 11 at p = 0 adds no codebook noise: Eq. 18, which is DDIM with eta = 0."""
    variant = ddpm("eps", T=200)
    process = variant.process
    x_t = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(4))
    eps_c = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(5))
    for t, t_prev in ((150, 120), (40, 39), (3, -1)):
        output = exact_output(variant, x_t, t)
        x0, eps = predict_x0_eps(process, "eps", output, x_t, t)
        assert ddcm_sigma(process, t, t_prev, 0.0) == 0
        ode = ode_step(process, x0, eps, t_prev)
        torch.testing.assert_close(ddcm_step(process, x0, eps, eps_c, t, t_prev, 0.0), ode,
                                   rtol=1e-6, atol=1e-6)
        ddim = DDIMSampler(process, steps=200, eta=0.0).step(output, t, t_prev, x_t)
        torch.testing.assert_close(ode, ddim, rtol=1e-5, atol=1e-5)


def test_back_trace_to_the_far_time_itself_is_the_ode_step() -> None:
    """p = 1 would go back to t - dt: no codebook noise is added, Eq. 18 alone."""
    for variant, t_far in ((flow(), 0.45), (ddpm(), 40)):
        process = variant.process
        x0, eps, eps_c = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(6))
        torch.testing.assert_close(back_trace(process, x0, eps, eps_c, t_far, t_far),
                                   ode_step(process, x0, eps, t_far))
