"""Prediction targets, the one conversion of a model output into (x0, eps), the losses."""

from __future__ import annotations

import pytest
import torch

from harness.diffusion.objectives import (
    ddpm_loss,
    draw_times_and_noise,
    flow_matching_loss,
    loss_weight,
    make_objective,
    ode_step,
    predict_x0_eps,
    target,
    to_x0_eps,
)
from harness.diffusion.processes import DDPM, RectifiedFlow, make_process
from tests.models.meta import META, meta_fftd

MU, S = 1.5, 0.5  # data ~ N(MU, S^2 I)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_every_prediction_target_inverts_to_x0_and_eps(prediction: str) -> None:
    generator = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator)
    a = torch.rand(5, 1, generator=generator) * 0.98 + 0.01
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * eps
    alpha, sigma = a.sqrt(), (1 - a).sqrt()
    output = target(prediction, z0, eps, (-sigma, alpha))
    x0_hat, eps_hat = to_x0_eps(prediction, output, z_t, alpha, sigma)
    torch.testing.assert_close(x0_hat, z0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(eps_hat, eps, rtol=1e-4, atol=1e-4)


def test_min_snr_weighting_clips_high_snr_steps() -> None:
    snr = torch.tensor([0.1, 5.0, 100.0])
    assert loss_weight("uniform", "eps", snr).tolist() == [1.0, 1.0, 1.0]
    torch.testing.assert_close(loss_weight("min_snr", "eps", snr, gamma=5.0),
                               torch.tensor([1.0, 1.0, 0.05]))
    torch.testing.assert_close(loss_weight("min_snr", "x0", snr, gamma=5.0),
                               torch.tensor([0.1, 5.0, 5.0]))


def test_rectified_flow_loss_is_smallest_at_the_exact_velocity() -> None:
    """For Gaussian data the ideal v_theta(z_t, t) = E[eps - z_0 | z_t] beats a near miss."""
    flow = RectifiedFlow(100)

    def velocity(z_t: torch.Tensor, time: torch.Tensor, bias: float = 0.0) -> torch.Tensor:
        t = (time / flow.T).reshape(-1, *[1] * (z_t.dim() - 1))
        x0 = MU + (1 - t) * S**2 / ((1 - t) ** 2 * S**2 + t**2) * (z_t - (1 - t) * MU)
        return (z_t - (1 - t) * x0) / t - x0 + bias  # eps_hat - x0_hat

    z0 = MU + S * torch.randn(20000, 2, generator=torch.Generator().manual_seed(0))
    exact = flow_matching_loss(velocity, z0, flow, "v", "uniform",
                               torch.Generator().manual_seed(1))
    off = flow_matching_loss(lambda z, t: velocity(z, t, 0.1), z0, flow, "v", "uniform",
                             torch.Generator().manual_seed(1))
    assert exact < off
    with pytest.raises(ValueError, match="uniform"):
        make_objective(flow, "v", "min_snr")(velocity, z0, torch.Generator().manual_seed(1))




@pytest.mark.parametrize("process", [DDPM.create("scaled_linear", 500), RectifiedFlow(500)],
                         ids=["ddpm", "rectified_flow"])
@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_predict_x0_eps_inverts_every_target_of_every_process(process, prediction: str
                                                              ) -> None:
    """Seed 002 Eq. 16 with Eq. 8: the output o = a x0 + b eps at t gives back x0 and eps,
    and Eq. 18 to the same t rebuilds z_t."""
    generator = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator)
    times = (10, 250, 499) if process.discrete else (0.05, 0.5, 0.95)
    for t in times:
        alpha, sigma = process.alpha(t), process.sigma(t)
        z_t = alpha * z0 + sigma * eps
        output = target(prediction, z0, eps, process.v_coefficients(t))
        x0_hat, eps_hat = predict_x0_eps(process, prediction, output, z_t, t)
        torch.testing.assert_close(x0_hat, z0, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(eps_hat, eps, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ode_step(process, x0_hat, eps_hat, t), z_t, rtol=1e-4,
                                   atol=1e-4)
    if prediction == "eps":  # the output is eps itself, not a rounded round trip
        assert torch.equal(predict_x0_eps(process, "eps", eps, z_t, t)[1], eps)


def test_ddpm_loss_is_smallest_at_the_exact_denoiser() -> None:
    """For Gaussian data E[eps | z_t] is known; it beats a biased one under the DDPM loss."""
    process = make_process("ddpm", "linear", 100)

    def eps_model(z_t: torch.Tensor, t: torch.Tensor, bias: float = 0.0) -> torch.Tensor:
        a = process.alpha_bar_at(t).to(z_t.dtype).reshape(-1, 1)
        return (1 - a).sqrt() * (z_t - a.sqrt() * MU) / (a * S**2 + 1 - a) + bias

    z0 = MU + S * torch.randn(20000, 2, generator=torch.Generator().manual_seed(0))
    exact = ddpm_loss(eps_model, z0, process, "eps", "uniform", torch.Generator().manual_seed(1))
    off = ddpm_loss(lambda z, t: eps_model(z, t, 0.1), z0, process, "eps", "uniform",
                    torch.Generator().manual_seed(1))
    assert exact < off


@pytest.mark.parametrize(("process", "prediction", "weighting"), [
    (DDPM.create("cosine", 8), "eps", "min_snr"), (DDPM.create("cosine", 8), "v", "uniform"),
    (DDPM.create("cosine", 8), "x0", "min_snr"), (RectifiedFlow(8), "v", "uniform")],
    ids=["ddpm-eps-min_snr", "ddpm-v", "ddpm-x0-min_snr", "rectified_flow-v"])
def test_the_losses_run_on_the_device_of_z0(process, prediction: str, weighting: str) -> None:
    z0 = torch.empty(2, 3, 4, 4, device=META)
    loss = make_objective(process, prediction, weighting)(meta_fftd(), z0,
                                                          torch.Generator().manual_seed(0))
    assert loss.device == META and loss.shape == ()


@pytest.mark.parametrize("process", [DDPM.create("cosine", 8), RectifiedFlow(8)],
                         ids=["ddpm", "rectified_flow"])
def test_t_then_eps_are_drawn_on_the_cpu_generator_and_moved(process) -> None:
    z0 = torch.zeros(3, 2)
    t, eps = draw_times_and_noise(process, z0, torch.Generator().manual_seed(4))
    generator = torch.Generator().manual_seed(4)
    assert torch.equal(t, process.training_times(3, generator))
    assert torch.equal(eps, torch.randn(3, 2, generator=generator))
    t, eps = draw_times_and_noise(process, z0.to(META), torch.Generator().manual_seed(4))
    assert t.device == META and eps.device == META
