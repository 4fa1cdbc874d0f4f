"""Stage 2 of a trial: the denoiser trains, is cached once per config (how training is
watched is not part of the key) and is rebuilt from its cache entry alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from harness.cache import ArtifactCache
from harness.config import Stage1Config, Stage2Config, TrialConfig
from harness.diffusion.processes import process_of
from harness.diffusion.samplers import DDIMSampler, sample
from harness.models import build_stage1
from harness.stages.stage2 import encode_images, load_entry, load_stage2, train_stage2

TINY_STAGE2 = {"channels": 8, "channel_mult": [1], "heads": 2, "T": 20, "train_steps": 3,
               "batch_size": 4}


def tiny_trial(**stage2: object) -> TrialConfig:
    return TrialConfig(name="t", dataset="d.yaml", seed=1, stage2=TINY_STAGE2 | stage2,
                       sample={"ddim_steps": 5, "num_samples": 6, "batch_size": 4})


def test_stage2_is_trained_once_then_reused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    stage1_config = Stage1Config(kind="conv_ae", f=2, channels=4, latent_channels=2)
    stage1 = build_stage1(stage1_config).eval()
    images = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    config = tiny_trial()
    cache = ArtifactCache(tmp_path)
    first = load_stage2(config, stage1, "stage1-key", images, cache)
    second = load_stage2(config, stage1, "stage1-key", images, cache)
    assert first.built and not second.built
    assert first.latent_shape == tuple(encode_images(stage1, images).shape[1:]) == (2, 4, 4)
    assert first.scale == second.scale > 0
    watched = tiny_trial(eval_every=1, eval_num_samples=2)  # how training is watched
    assert not load_stage2(watched, stage1, "stage1-key", images, cache).built
    assert load_stage2(tiny_trial(lr=2e-4), stage1, "stage1-key", images, cache).built
    stage1_entry = cache.path("stage1", "stage1-key")  # as a stage-1 build leaves it
    stage1_entry.mkdir(parents=True)
    torch.save(stage1.state_dict(), stage1_entry / "model.pt")
    (stage1_entry / "config.yaml").write_text(yaml.safe_dump(stage1_config.model_dump()))
    stage1_again, rebuilt = load_entry(first.path)  # the card alone rebuilds both models
    z = torch.randn(2, 2, 4, 4)
    t = torch.tensor([3, 7])
    with torch.no_grad():
        assert torch.equal(rebuilt.denoiser(z, t), second.denoiser(z, t))
        assert torch.equal(stage1_again.decode(z), stage1.decode(z))
    assert rebuilt.scale == first.scale and rebuilt.config == config.stage2


def test_a_tiny_denoiser_overfits_one_batch() -> None:
    config = Stage2Config(channels=8, channel_mult=[1], heads=2, T=50, train_steps=150,
                          batch_size=4, lr=3e-3, ema=0.9)
    latents = torch.randn(4, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    result = train_stage2(config, latents, seed=0)
    start, end = sum(result.history[:10]) / 10, sum(result.history[-10:]) / 10
    assert end < 0.5 * start
    samples = sample(result.ema, DDIMSampler(process_of(config), 10), (3, 2, 4, 4),
                     torch.Generator().manual_seed(1))
    assert samples.shape == (3, 2, 4, 4) and torch.isfinite(samples).all()


def test_training_is_seeded() -> None:
    config = Stage2Config(channels=8, channel_mult=[1], heads=2, T=20, train_steps=5,
                          batch_size=2)
    latents = torch.randn(4, 2, 4, 4)
    assert train_stage2(config, latents, 3).history == train_stage2(config, latents, 3).history
    assert train_stage2(config, latents, 3).history != train_stage2(config, latents, 4).history
