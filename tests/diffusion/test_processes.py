"""Forward processes: Eq. 8's alpha and sigma, the marginal on a batch, the registry."""

from __future__ import annotations

import math

import pytest
import torch

from harness.diffusion import PROCESSES
from harness.diffusion.processes import (
    DDPM,
    RectifiedFlow,
    make_betas,
    make_process,
    noise_level,
    time_at_noise_level,
)
from tests.models.meta import META


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "cosine"])
def test_ddpm_is_variance_preserving_and_its_add_noise_is_eq_8(kind: str) -> None:
    process = DDPM.create(kind, 500)
    assert len(make_betas(kind, 500)) == process.T == 500
    generator = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(3, 2, generator=generator), torch.randn(3, 2, generator=generator)
    for t in (0, 100, 499):
        assert process.alpha(t) ** 2 + process.sigma(t) ** 2 == pytest.approx(1.0)
        noisy = process.add_noise(z0, eps, torch.full((3,), t))
        torch.testing.assert_close(noisy, process.alpha(t) * z0 + process.sigma(t) * eps)
    assert process.alpha(-1) == 1.0 and process.sigma(-1) == 0.0  # the clean end
    assert process.t_min == -1 and process.t_max == 499 and process.discrete


def test_rectified_flow_marginal_and_model_time() -> None:
    flow = RectifiedFlow(100)
    assert (flow.alpha(0.25), flow.sigma(0.25)) == (0.75, 0.25)
    z0, eps = torch.ones(2, 3), torch.zeros(2, 3)
    torch.testing.assert_close(flow.add_noise(z0, eps, torch.tensor([0.0, 0.5])),
                               torch.tensor([[1.0] * 3, [0.5] * 3]))
    assert flow.model_time(0.5, 4).tolist() == [50.0] * 4
    assert not flow.discrete and (flow.t_min, flow.t_max) == (0.0, 1.0)


def test_processes_are_made_by_name() -> None:
    assert set(PROCESSES.names()) >= {"ddpm", "rectified_flow"}
    assert isinstance(make_process("ddpm", "cosine", 50), DDPM)
    assert isinstance(make_process("rectified_flow", "linear", 50), RectifiedFlow)
    with pytest.raises(ValueError, match="unknown process"):
        make_process("edm")


@pytest.mark.parametrize("process", [DDPM.create("scaled_linear", 500), RectifiedFlow(500)],
                         ids=["ddpm", "rectified_flow"])
def test_time_at_noise_level_inverts_sigma_over_alpha(process) -> None:
    t = time_at_noise_level(process, 1 / 3)
    if process.discrete:
        assert t == int(t)
        assert abs(math.log(noise_level(process, t) * 3)) < 0.05
    else:
        assert noise_level(process, t) == pytest.approx(1 / 3, rel=1e-9)


def test_ddpm_tables_are_read_on_the_device_of_the_timesteps() -> None:
    """The float64 tables stay on the CPU; a device's timesteps read a copy on that device
    (meta tensors cannot come back to the CPU)."""
    process = DDPM.create("cosine", 10)
    t = torch.tensor([-1, 0, 5, 9])
    assert torch.equal(process.alpha_bar_at(t), torch.cat([torch.ones(1, dtype=torch.float64),
                                                           process.alpha_bar[t[1:]]]))
    assert process.alpha_bar_at(4).item() == process.alpha_bar[4].item()
    assert process.betas.device.type == "cpu"
    on_meta = process.alpha_bar_at(t.to(META))
    assert on_meta.device == META and on_meta.dtype == torch.float64
    assert process.alpha_bar_at(4, META).device == META
    assert process.snr(t[1:].to(META)).device == META
    z0 = torch.empty(4, 2, device=META)
    assert process.add_noise(z0, z0, t.to(META)).device == META


@pytest.mark.parametrize("process", [DDPM.create("cosine", 10), RectifiedFlow(10)],
                         ids=["ddpm", "rectified_flow"])
def test_model_times_are_made_on_the_device_asked_for(process) -> None:
    t = 3 if process.discrete else 0.3
    assert process.model_time(t, 4, META).device == META
    assert process.model_time(torch.full((4,), t, device=META)).device == META
    assert torch.equal(process.model_time(t, 4, "cpu"), process.model_time(t, 4))
