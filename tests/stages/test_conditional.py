"""Class-conditional stage 2: it generates the class it is asked for, label dropout trains the
unconditional model with it (p_uncond = 1: the unconditional model itself), and a killed run
resumes its label-dropout stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.config import Stage2Config
from harness.diffusion.guidance import Guided
from harness.diffusion.processes import process_of
from harness.diffusion.samplers import make_sampler, sample
from harness.models.conditioning import NULL_LABEL
from harness.stages.checkpoints import Checkpoints
from harness.stages.stage2 import TrainLabels, drop_labels, label_generator, train_stage2

CLASSES = ("left", "top")
TINY = {"channels": 16, "channel_mult": [1], "heads": 2, "attention_resolution": 4, "T": 1000,
        "batch_size": 32, "lr": 3e-3, "ema": 0.9, "scale_shift": True}


def separable(count: int = 64) -> tuple[torch.Tensor, TrainLabels]:
    """Two trivially separable classes of 3x4x4 'latents': +0.8 on the left half and -0.8 on
    the right (class "left"), or the same from top to bottom ("top"), plus a little noise.
    (The classes differ in layout, not in mean: FFTD's one-channel GroupNorms at width 16
    remove each channel's mean.)"""
    labels = np.arange(count) % 2
    left, top = torch.ones(4, 4), torch.ones(4, 4)
    left[:, 2:], top[2:] = -1, -1
    patterns = torch.stack([left, top])[torch.from_numpy(labels)]
    noise = 0.1 * torch.randn(count, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    return 0.8 * patterns[:, None] + noise, TrainLabels(labels, CLASSES, "test-labels")


def layout(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(left minus right, top minus bottom) mean of each sample: about (1.6, 0) for class
    left, (0, 1.6) for class top."""
    return ((z[..., :2].mean(dim=(1, 2, 3)) - z[..., 2:].mean(dim=(1, 2, 3))),
            (z[..., :2, :].mean(dim=(1, 2, 3)) - z[..., 2:, :].mean(dim=(1, 2, 3))))


def samples_of(model: torch.nn.Module, config: Stage2Config, label: int, scale: float = 1.0,
               count: int = 8) -> torch.Tensor:
    sampler = make_sampler("ddim", process_of(config), config.prediction, 10)
    labels = torch.full((count,), label)
    return sample(Guided(model, labels, scale), sampler, (count, 3, 4, 4),
                  torch.Generator().manual_seed(1))


def accuracy(model: torch.nn.Module, config: Stage2Config, scale: float) -> float:
    """The fraction of samples of each asked class whose layout is that class's."""
    horizontal, vertical = layout(samples_of(model, config, 0, scale))
    right = (horizontal > vertical).float().mean()
    horizontal, vertical = layout(samples_of(model, config, 1, scale))
    return float((right + (vertical > horizontal).float().mean()) / 2)


@pytest.mark.parametrize("conditioning", ["class", "cross_attention"])
def test_a_conditional_model_generates_the_class_it_is_asked_for(conditioning: str) -> None:
    config = Stage2Config(conditioning=conditioning, train_steps=600, **TINY)
    latents, labels = separable()
    model = train_stage2(config, latents, 0, labels=labels).ema
    assert accuracy(model, config, 1.0) >= 0.85  # plain conditional sampling
    assert accuracy(model, config, 3.0) == 1.0  # guidance sharpens it
    assert accuracy(model, config, 0.0) == 0.5  # unconditional: one set for both labels


def test_p_uncond_1_trains_the_unconditional_model_whatever_label_it_is_given() -> None:
    latents, labels = separable(32)
    plain = Stage2Config(train_steps=20, **TINY)
    dropped = Stage2Config(conditioning="class", p_uncond=1.0, train_steps=20, **TINY)
    unconditional = train_stage2(plain, latents, 0).ema
    conditional = train_stage2(dropped, latents, 0, labels=labels).ema
    weights = conditional.state_dict()
    for name, value in unconditional.state_dict().items():
        assert torch.equal(weights[name], value), name
    assert not conditional.class_embed.table.weight.any()  # no label was ever seen
    expected = samples_of(lambda z, t, _labels: unconditional(z, t), plain, 0)
    for label in (0, 1, NULL_LABEL):
        assert torch.equal(samples_of(conditional, dropped, label), expected)


def test_label_dropout_draws_from_its_own_stream_at_rate_p_uncond() -> None:
    labels = torch.zeros(20_000, dtype=torch.long)
    dropped = drop_labels(labels, 0.25, label_generator(0))
    assert abs(float((dropped == NULL_LABEL).float().mean()) - 0.25) < 0.01
    assert torch.equal(dropped, drop_labels(labels, 0.25, label_generator(0)))
    assert not torch.equal(dropped, drop_labels(labels, 0.25, label_generator(1)))
    assert not (drop_labels(labels, 0.0, label_generator(0)) == NULL_LABEL).any()


def test_a_killed_conditional_run_resumes_bit_for_bit(tmp_path: Path) -> None:
    config = Stage2Config(conditioning="class", p_uncond=0.5, train_steps=6, log_every=2,
                          checkpoint_every=3, **TINY)
    latents, labels = separable(32)
    whole = train_stage2(config, latents, 1, labels=labels)
    checkpoints = Checkpoints(tmp_path, config.checkpoint_every)

    def killed_at_step_4(_metrics: dict[str, float], step: int) -> None:
        if step >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_stage2(config, latents, 1, log_metrics=killed_at_step_4,
                     checkpoints=checkpoints, labels=labels)
    torch.manual_seed(123)  # whatever the global generator did in between
    resumed = train_stage2(config, latents, 1, checkpoints=checkpoints, labels=labels)
    assert resumed.history == whole.history
    for name, value in whole.ema.state_dict().items():
        assert torch.equal(resumed.ema.state_dict()[name], value), name
