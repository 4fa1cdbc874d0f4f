"""Every stage computes on the runtime's device. Run on torch's `meta` device: a tensor made on
the CPU and mixed into the computation raises, and the only way out of a meta computation is
its first copy to the host. So a stage that runs on meta until that copy, at the place meant
for it (a log window's losses, the uint8 images), created nothing on another device."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from harness.config import SampleConfig, Stage1Config, Stage2Config
from harness.models import build_stage1, build_stage2
from harness.runtime import Runtime
from harness.stages.generate import generate, sampler_for
from harness.stages.stage1 import reconstruct, train_stage1
from harness.stages.stage2 import Stage2Model, encode_images, train_stage2

META = Runtime(torch.device("meta"))
IMAGES = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)


def runs_on_device_until(where: str, work: Callable[[], object]) -> None:
    """`work` fails only where it copies its first meta tensor to the host, in `where`."""
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor") as info:
        work()
    ours = [entry.name for entry in info.traceback if "/harness/" in str(entry.path)]
    assert ours[-1] == where, info.getrepr()


@pytest.mark.parametrize("kind", ["conv_ae", "kl"])
def test_stage1_training_steps_run_on_the_device(kind: str) -> None:
    config = Stage1Config(kind=kind, f=2, channels=8, latent_channels=2, K=16, train_steps=3,
                          batch_size=4, perceptual_weight=0.0, adversarial_start=1,
                          log_every=3)
    runs_on_device_until("flush", lambda: train_stage1(config, IMAGES, META))


def test_stage2_training_steps_run_on_the_device() -> None:
    config = Stage2Config(channels=8, channel_mult=[1], heads=2, T=20, train_steps=3,
                          batch_size=4, dropout=0.1, log_every=3)
    latents = torch.randn(8, 2, 4, 4)
    runs_on_device_until("train_stage2", lambda: train_stage2(config, latents, 0, META))


def meta_models() -> tuple[torch.nn.Module, Stage2Model]:
    stage1 = build_stage1(Stage1Config(kind="conv_ae", f=2, channels=4, latent_channels=2))
    config = Stage2Config(channels=8, channel_mult=[1], heads=2, T=20)
    denoiser = build_stage2(config, 2, 4).eval()
    return stage1.to("meta").eval(), Stage2Model(denoiser.to("meta"), config, 1.3, (2, 4, 4))


def test_encoding_runs_on_the_device_and_stays_there() -> None:
    stage1, _ = meta_models()
    assert encode_images(stage1, IMAGES, 4, META).device.type == "meta"


def test_reconstruction_runs_on_the_device() -> None:
    stage1, _ = meta_models()
    runs_on_device_until("to_uint8", lambda: reconstruct(stage1, IMAGES, 4, META))


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_sampling_and_decoding_run_on_the_device(sampler: str) -> None:
    stage1, model = meta_models()
    chosen = sampler_for(SampleConfig(sampler=sampler, ddim_steps=3, eta=1.0), model)
    runs_on_device_until("to_uint8", lambda: generate(stage1, model, chosen, 4, 4, 0, META))
