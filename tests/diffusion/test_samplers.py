"""Samplers checked against closed forms: Gaussian data has an exact denoiser."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from harness.diffusion import SAMPLERS
from harness.diffusion.processes import DDPM, RectifiedFlow
from harness.diffusion.samplers import (
    DDIMSampler,
    DDPMSampler,
    EulerSampler,
    Sampler,
    make_sampler,
    sample,
)
from tests.models.meta import META, meta_fftd

MU, S = 1.5, 0.5  # data ~ N(MU, S^2 I)


def exact_z_T(schedule: DDPM, shape: tuple[int, ...]) -> torch.Tensor:
    """A draw of the true marginal at t = T-1 (alpha_bar_T is not exactly 0)."""
    a = schedule.alpha_bar[-1].item()
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    return a**0.5 * MU + (a * S**2 + 1 - a) ** 0.5 * noise


def exact_eps(schedule: DDPM):
    """E[eps | z_t] for Gaussian data: sqrt(1-a) (z_t - sqrt(a) mu) / (a s^2 + 1 - a)."""
    def model(z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = schedule.alpha_bar_at(t).to(z_t.dtype).reshape(-1, *[1] * (z_t.dim() - 1))
        return (1 - a).sqrt() * (z_t - a.sqrt() * MU) / (a * S**2 + 1 - a)
    return model


def ddim_chain_variance(schedule: DDPM, steps: list[int]) -> float:
    """Variance DDIM (eta = 0) ends with, in closed form: each step is linear in z_t.

    With v_t = a s^2 + 1 - a the true marginal variance, one step scales z_t - E[z_t] by
    k = (sqrt(a a') s^2 + sqrt((1 - a)(1 - a'))) / v_t <= sqrt(v_t' / v_t) (Cauchy-Schwarz):
    finite-step DDIM under-disperses Gaussian data, and the bias vanishes as S grows.
    """
    variance = None
    for t, t_prev in zip(steps, [*steps[1:], -1], strict=True):
        a, a_prev = float(schedule.alpha_bar_at(t)), float(schedule.alpha_bar_at(t_prev))
        v_t = a * S**2 + 1 - a
        variance = v_t if variance is None else variance
        k = ((a * a_prev) ** 0.5 * S**2 + ((1 - a) * (1 - a_prev)) ** 0.5) / v_t
        variance *= k * k
    return variance


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "cosine"])
@pytest.mark.parametrize("steps", [10, 50, 200])
def test_ddim_eta0_with_the_exact_denoiser_matches_its_closed_form(kind: str,
                                                                   steps: int) -> None:
    schedule = DDPM.create(kind, 500)
    sampler = DDIMSampler(schedule, steps, eta=0.0)
    samples = sample(exact_eps(schedule), sampler, (20000, 4),
                     z_T=exact_z_T(schedule, (20000, 4)))
    assert samples.mean().item() == pytest.approx(MU, abs=0.02)
    expected = ddim_chain_variance(schedule, sampler.timesteps())
    assert samples.var().item() == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("steps", [100, 200, 500])
def test_ddim_eta0_recovers_the_data_distribution(steps: int) -> None:
    schedule = DDPM.create("cosine", 500)
    samples = sample(exact_eps(schedule), DDIMSampler(schedule, steps, eta=0.0), (20000, 4),
                     z_T=exact_z_T(schedule, (20000, 4)))
    assert samples.mean().item() == pytest.approx(MU, abs=0.02)
    assert samples.var().item() == pytest.approx(S**2, rel=0.05)


def test_ddpm_reference_sampler_recovers_the_data_distribution() -> None:
    schedule = DDPM.create("cosine", 1000)
    samples = sample(exact_eps(schedule), DDPMSampler(schedule), (20000, 2),
                     torch.Generator().manual_seed(0), z_T=exact_z_T(schedule, (20000, 2)))
    assert samples.mean().item() == pytest.approx(MU, abs=0.02)
    assert samples.var().item() == pytest.approx(S**2, rel=0.05)


def test_ddim_eta1_with_all_steps_is_the_ddpm_posterior() -> None:
    schedule = DDPM.create("linear", 100)
    ddim, ddpm = DDIMSampler(schedule, 100, eta=1.0), DDPMSampler(schedule)
    assert ddim.timesteps() == ddpm.timesteps()
    model = exact_eps(schedule)
    z = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    for t in (99, 50, 10, 1):
        assert ddim.sigma(t, t - 1) ** 2 == pytest.approx(ddpm.posterior_variance(t), rel=1e-9)
        output = model(z, torch.full((8,), t))
        one = ddim.step(output, t, t - 1, z, torch.Generator().manual_seed(t))
        two = ddpm.step(output, t, t - 1, z, torch.Generator().manual_seed(t))
        torch.testing.assert_close(one, two, rtol=1e-5, atol=1e-5)


def test_ddim_timesteps_are_s_evenly_spaced_steps() -> None:
    schedule = DDPM.create("linear", 500)
    steps = DDIMSampler(schedule, 10).timesteps()
    assert len(steps) == 10 and steps[0] == 499 and steps[-1] == 0
    assert steps == sorted(steps, reverse=True)
    with pytest.raises(ValueError, match=r"1\.\.T=500"):
        DDIMSampler(schedule, 501).timesteps()


def exact_velocity(flow):
    """E[eps - z_0 | z_t] of rectified flow for Gaussian data (z_t = (1 - t) z_0 + t eps)."""
    def model(z_t: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        t = (time / flow.T).to(z_t.dtype).reshape(-1, *[1] * (z_t.dim() - 1))
        x0 = MU + (1 - t) * S**2 / ((1 - t) ** 2 * S**2 + t**2) * (z_t - (1 - t) * MU)
        return (z_t - (1 - t) * x0) / t - x0
    return model


@pytest.mark.parametrize("steps", [5, 200])
def test_euler_flow_sampler_with_the_exact_velocity_recovers_gaussian_data(steps: int) -> None:
    """The flow ODE maps N(0, I) to N(MU, S^2 I); Euler's error shrinks with the steps."""
    flow = RectifiedFlow(100)
    sampler = EulerSampler(flow, steps)
    assert sampler.timesteps()[0] == 1.0 and len(sampler.timesteps()) == steps
    z = sample(exact_velocity(flow), sampler, (20000, 2),
               generator=torch.Generator().manual_seed(0))
    error = max(abs(z.mean().item() - MU), abs(z.std().item() - S))
    assert (error < 0.02) if steps == 200 else (error > 0.02)


def test_the_euler_step_is_the_flow_ode_step_z_plus_dt_v() -> None:
    """Eq. 18 on the flow's marginal, alpha(t') x0 + sigma(t') eps, is z_t + (t' - t) v."""
    flow = RectifiedFlow(100)
    generator = torch.Generator().manual_seed(3)
    z, v = torch.randn(6, 4, generator=generator), torch.randn(6, 4, generator=generator)
    for t, t_prev in ((1.0, 0.8), (0.5, 0.3), (0.2, 0.0)):
        stepped = EulerSampler(flow, 5, "v").step(v, t, t_prev, z)
        torch.testing.assert_close(stepped, z + (t_prev - t) * v, rtol=1e-5, atol=1e-5)


def test_samplers_are_built_by_name_for_the_process() -> None:
    ddpm, flow = DDPM.create("linear", 100), RectifiedFlow(100)
    assert isinstance(make_sampler("ddim", ddpm, "eps", 10), DDIMSampler)
    assert isinstance(make_sampler("ddpm", ddpm, "eps", 10), DDPMSampler)
    assert isinstance(make_sampler("ddim", flow, "v", 10), EulerSampler)
    with pytest.raises(ValueError, match="ddpm process"):
        make_sampler("ddpm", flow, "v", 10)
    with pytest.raises(ValueError, match="eta 0"):
        make_sampler("ddim", flow, "v", 10, eta=0.5)
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("lms", ddpm, "eps", 10)
    with pytest.raises(ValueError, match="timestep_spacing linspace"):
        make_sampler("ddim", flow, "v", 10, spacing="quadratic")
    assert make_sampler("ddim", ddpm, "eps", 10, spacing="leading").timesteps()[0] == 90


def every_sampler() -> Iterator[object]:
    """Each registered sampler on each process it runs on, deterministic and stochastic."""
    seen = set()
    for name in SAMPLERS.names():
        for process in (DDPM.create("cosine", 8), RectifiedFlow(8)):
            for eta in (0.0, 1.0):
                try:
                    sampler = make_sampler(name, process, "eps", 4, eta)
                except ValueError:  # not a sampler of this process
                    continue
                if repr(sampler) not in seen:  # (a sampler without eta once)
                    seen.add(repr(sampler))
                    yield pytest.param(sampler, id=f"{name}-{process.name}-eta{eta:g}")


@pytest.mark.parametrize("sampler", every_sampler())
def test_every_sampler_runs_on_the_device_it_is_given(sampler: Sampler) -> None:
    """z_T, the model times, the schedule's values and the noise of every step follow the
    device: on meta, any of them made on the CPU raises."""
    z = sample(meta_fftd(), sampler, (2, 3, 4, 4), torch.Generator().manual_seed(0),
               device=META)
    assert z.device == META and z.shape == (2, 3, 4, 4)
    z_T = torch.empty(2, 3, 4, 4, device=META)  # without a device: z_T's
    assert sample(meta_fftd(), sampler, (2, 3, 4, 4), z_T=z_T).device == META


def test_the_noise_comes_from_the_cpu_generator_on_every_device() -> None:
    """device="cpu" is the default's chain draw for draw: z_T and each step's noise are drawn
    on the CPU generator, in the same order, and moved."""
    schedule = DDPM.create("cosine", 20)
    sampler = DDIMSampler(schedule, 5, eta=1.0)
    model = exact_eps(schedule)
    plain = sample(model, sampler, (4, 3), torch.Generator().manual_seed(2))
    on_cpu = sample(model, sampler, (4, 3), torch.Generator().manual_seed(2),
                    device=torch.device("cpu"))
    assert torch.equal(plain, on_cpu)
    generator = torch.Generator().manual_seed(2)
    z = torch.randn(4, 3, generator=generator)
    for t, t_prev in zip(sampler.timesteps(), [*sampler.timesteps()[1:], -1], strict=True):
        z = sampler.step(model(z, torch.full((4,), t)), t, t_prev, z, generator)
    assert torch.equal(z, plain) and plain.isfinite().all()
