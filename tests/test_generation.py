"""Stage 2 of a trial: the denoiser trains once per config and samples decode to images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.cache import ArtifactCache
from harness.config import SampleConfig, Stage1Config, TrialConfig
from harness.generation import encode_images, generate, load_stage2, make_sampler
from harness.models import build_stage1


def test_stage2_is_trained_once_then_reused_and_samples_decode(tmp_path: Path) -> None:
    torch.manual_seed(0)
    stage1 = build_stage1(Stage1Config(kind="conv_ae", f=2, channels=4, latent_channels=2))
    images = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    config = TrialConfig(name="t", dataset="d.yaml", seed=1,
                         stage2={"channels": 8, "channel_mult": [1], "heads": 2, "T": 20,
                                 "train_steps": 3, "batch_size": 4},
                         sample={"ddim_steps": 5, "num_samples": 6, "batch_size": 4})
    cache = ArtifactCache(tmp_path)
    first = load_stage2(config, stage1, "stage1-key", images, cache)
    second = load_stage2(config, stage1, "stage1-key", images, cache)
    assert first.built and not second.built
    assert first.latent_shape == tuple(encode_images(stage1, images).shape[1:]) == (2, 4, 4)
    assert first.scale == second.scale > 0
    sampler = make_sampler(config.sample, config.stage2)
    samples = generate(stage1, second, sampler, 6, 4, seed=1)
    assert samples.shape == (6, 8, 8, 3) and samples.dtype == np.uint8
    assert np.array_equal(samples, generate(stage1, first, sampler, 6, 4, seed=1))
    ddpm = make_sampler(SampleConfig(sampler="ddpm"), config.stage2)
    assert len(ddpm.timesteps()) == 20
