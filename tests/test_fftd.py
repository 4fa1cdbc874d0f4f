from __future__ import annotations

import pytest
import torch

from harness.config import Stage2Config
from harness.diffusion.samplers import DDIMSampler, sample
from harness.diffusion.schedules import NoiseSchedule
from harness.models.fftd import FFTD
from harness.training_stage2 import build_fftd, train_stage2


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_fusion_modes_order_parameter_counts_add_concat_adaptive() -> None:
    counts = [parameters(FFTD(4, 16, channels=16, fusion=f))
              for f in ("add", "concat", "adaptive")]
    assert counts[0] < counts[1] < counts[2]


@pytest.mark.parametrize("size", [4, 8, 16])
@pytest.mark.parametrize("fusion", ["add", "concat", "adaptive"])
def test_output_has_the_latent_shape(size: int, fusion: str) -> None:
    model = FFTD(3, size, channels=8, channel_mult=(1, 2, 2), heads=2, fusion=fusion)
    z = torch.randn(2, 3, size, size)
    assert model(z, torch.tensor([0, 499])).shape == z.shape


def test_unknown_fusion_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fusion 'sum'"):
        FFTD(4, 8, fusion="sum")


def test_a_tiny_denoiser_overfits_one_batch() -> None:
    config = Stage2Config(channels=8, channel_mult=[1], heads=2, T=50, train_steps=150,
                          batch_size=4, lr=3e-3, ema=0.9)
    latents = torch.randn(4, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    result = train_stage2(config, latents, seed=0)
    start, end = sum(result.history[:10]) / 10, sum(result.history[-10:]) / 10
    assert end < 0.5 * start
    samples = sample(result.ema, DDIMSampler(NoiseSchedule.create(config.beta_schedule, 50), 10),
                     (3, 2, 4, 4), torch.Generator().manual_seed(1))
    assert samples.shape == (3, 2, 4, 4) and torch.isfinite(samples).all()


def test_training_is_seeded() -> None:
    config = Stage2Config(channels=8, channel_mult=[1], heads=2, T=20, train_steps=5,
                          batch_size=2)
    latents = torch.randn(4, 2, 4, 4)
    assert train_stage2(config, latents, 3).history == train_stage2(config, latents, 3).history
    assert parameters(build_fftd(config, 2, 4)) > 0
