"""Generation: samples from a trained stage 2 decode to uint8 images, seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.cache import ArtifactCache
from harness.config import SampleConfig, Stage1Config, TrialConfig
from harness.models import build_stage1
from harness.stages.generate import generate, sampler_for
from harness.stages.stage2 import load_stage2


def test_samples_decode_to_seeded_uint8_images(tmp_path: Path) -> None:
    torch.manual_seed(0)
    stage1 = build_stage1(Stage1Config(kind="conv_ae", f=2, channels=4, latent_channels=2))
    images = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    config = TrialConfig(name="t", dataset="d.yaml", seed=1,
                         stage2={"channels": 8, "channel_mult": [1], "heads": 2, "T": 20,
                                 "train_steps": 3, "batch_size": 4},
                         sample={"ddim_steps": 5, "num_samples": 6, "batch_size": 4})
    model = load_stage2(config, stage1, "stage1-key", images, ArtifactCache(tmp_path))
    sampler = sampler_for(config.sample, model)
    assert len(sampler.timesteps()) == 5
    samples = generate(stage1, model, sampler, 6, 4, seed=1)
    assert samples.shape == (6, 8, 8, 3) and samples.dtype == np.uint8
    assert np.array_equal(samples, generate(stage1, model, sampler, 6, 4, seed=1))
    assert not np.array_equal(samples, generate(stage1, model, sampler, 6, 4, seed=2))
    ddpm = sampler_for(SampleConfig(sampler="ddpm"), model)
    assert len(ddpm.timesteps()) == 20
