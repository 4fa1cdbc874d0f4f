"""The FFTD denoiser (seed 000 section 2.2): fusion modes, shapes, built from its config."""

from __future__ import annotations

import pytest
import torch

from harness.config import Stage2Config
from harness.models import build_stage2
from harness.models.denoisers.fftd import FFTD, timestep_embedding
from tests.models.meta import META, meta_fftd


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_fusion_modes_order_parameter_counts_add_concat_adaptive() -> None:
    counts = [parameters(build_stage2(Stage2Config(channels=16, fusion=f), 4, 16))
              for f in ("add", "concat", "adaptive")]
    assert counts[0] < counts[1] < counts[2]


@pytest.mark.parametrize("size", [4, 8, 16])
@pytest.mark.parametrize("fusion", ["add", "concat", "adaptive"])
def test_output_has_the_latent_shape(size: int, fusion: str) -> None:
    config = Stage2Config(channels=8, channel_mult=[1, 2, 2], heads=2, fusion=fusion)
    model = build_stage2(config, 3, size)
    z = torch.randn(2, 3, size, size)
    assert model(z, torch.tensor([0, 499])).shape == z.shape


def test_the_builder_takes_every_setting_from_the_config() -> None:
    config = Stage2Config(channels=8, channel_mult=[1, 2], heads=2, attention_resolution=4,
                          fusion="concat", dropout=0.1)
    model = build_stage2(config, 4, 8)
    assert isinstance(model, FFTD) and model.channels == 8
    assert parameters(model) == parameters(FFTD(
        4, 8, channels=8, channel_mult=(1, 2), heads=2, attention_resolution=4,
        fusion="concat", dropout=0.1))


def test_unknown_fusion_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fusion 'sum'"):
        FFTD(4, 8, channels=8, channel_mult=(1,), heads=2, attention_resolution=8,
             fusion="sum", dropout=0.0)


@pytest.mark.parametrize("fusion", ["add", "concat", "adaptive"])
def test_the_forward_runs_on_the_device_of_its_inputs(fusion: str) -> None:
    model = meta_fftd(3, 8, T=500, fusion=fusion)
    out = model(torch.empty(2, 3, 8, 8, device=META), torch.tensor([0, 499], device=META))
    assert out.device == META and out.shape == (2, 3, 8, 8)


def test_the_timestep_embedding_is_the_sinusoid_on_the_timesteps_device() -> None:
    t = torch.tensor([0, 7, 499])
    embedding = timestep_embedding(t, 8)
    frequencies = 10000.0 ** (-torch.arange(4, dtype=torch.float64) / 4)
    angles = t.double()[:, None] * frequencies
    torch.testing.assert_close(embedding.double(), torch.cat([angles.cos(), angles.sin()], 1),
                               rtol=0, atol=1e-4)
    assert timestep_embedding(t.to(META), 8).device == META
