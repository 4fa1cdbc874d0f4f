from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.config import Stage1Config
from harness.models import build_stage1
from harness.training import reconstruct, to_model_range, to_uint8, train_stage1


@pytest.mark.parametrize("f", [1, 2, 4, 8, 16, 32])
def test_conv_autoencoder_latent_shape_for_every_f(f: int) -> None:
    model = build_stage1(Stage1Config(f=f, channels=4, latent_channels=3))
    x = torch.zeros(2, 3, 64, 64)
    z = model.encode(x)
    assert z.shape == (2, 3, 64 // f, 64 // f)
    assert model.decode(z).shape == x.shape


def test_uint8_round_trip_is_exact() -> None:
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(to_uint8(to_model_range(images)), images)


def test_stage1_training_reduces_the_loss_and_is_seeded() -> None:
    images = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    images[:, :8] = 200  # some structure to learn
    config = Stage1Config(f=2, channels=8, latent_channels=4, train_steps=60, batch_size=8,
                          lr=3e-3)
    first = train_stage1(config, images)
    assert np.mean(first.history[-10:]) < 0.7 * np.mean(first.history[:5])
    second = train_stage1(config, images)
    assert first.history == second.history
    assert reconstruct(first.model, images, 5).shape == images.shape
