"""A trial's runtime: its device and precision, and what of it enters the cache keys."""

from __future__ import annotations

import math

import pytest
import torch

from harness.config import ResourcesConfig, Stage1Config, Stage2Config, TrialConfig
from harness.keys import stage1_key, stage2_key
from harness.runtime import Runtime
from harness.stages.stage2 import train_stage2


def test_fp32_without_compile_leaves_the_cache_keys_as_they_were() -> None:
    config = TrialConfig(name="t", dataset="d.yaml")
    assert Runtime().numerics() == {}
    assert stage1_key(config.stage1, "data", Runtime().numerics()) == stage1_key(
        config.stage1, "data")
    assert stage2_key(config, "s1", Runtime().numerics()) == stage2_key(config, "s1")
    for other in (Runtime(precision="bf16"), Runtime(compile=True)):
        assert stage1_key(config.stage1, "data", other.numerics()) != stage1_key(
            config.stage1, "data")
        assert stage2_key(config, "s1", other.numerics()) != stage2_key(config, "s1")


def test_how_training_is_watched_is_not_part_of_the_keys() -> None:
    config = TrialConfig(name="t", dataset="d.yaml")
    watched = TrialConfig(name="t", dataset="d.yaml",
                          stage1=Stage1Config(log_every=7, checkpoint_every=9),
                          stage2=Stage2Config(log_every=7, checkpoint_every=9))
    assert stage1_key(watched.stage1, "data") == stage1_key(config.stage1, "data")
    assert stage2_key(watched, "s1") == stage2_key(config, "s1")


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32),
                                                  ("bf16", torch.bfloat16),
                                                  ("fp16", torch.float16)])
def test_the_models_run_in_the_precision_asked_for(precision: str, dtype: torch.dtype) -> None:
    layer = torch.nn.Linear(4, 4)
    with Runtime(precision=precision).autocast():
        assert layer(torch.randn(2, 4)).dtype == dtype
    assert layer(torch.randn(2, 4)).dtype == torch.float32  # and only inside


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_stage2_trains_in_lower_precision(precision: str) -> None:
    config = Stage2Config(channels=8, channel_mult=[1], heads=2, T=20, train_steps=4,
                          batch_size=4, log_every=2)
    latents = torch.randn(8, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    full = train_stage2(config, latents, 0).history
    lower = train_stage2(config, latents, 0, Runtime(precision=precision)).history
    assert len(lower) == 4 and all(math.isfinite(loss) for loss in lower)
    assert lower != full  # the arithmetic did change


def test_the_runtime_comes_from_the_resources_section() -> None:
    runtime = Runtime.for_trial(ResourcesConfig(precision="bf16", compile=True))
    assert (runtime.device.type, runtime.precision, runtime.compile) == ("cpu", "bf16", True)
    assert runtime.tags() == {"runtime.device": "cpu", "runtime.precision": "bf16",
                              "runtime.compile": "true"}
    with pytest.raises(ValueError, match="precision"):
        ResourcesConfig(precision="fp64")


def test_compile_wraps_the_model_and_shares_its_parameters() -> None:
    """Compiling happens at the first call (a minute on 2 cores for a tiny FFTD, so no test
    trains through it); what trains is the model's own parameters."""
    layer = torch.nn.Linear(2, 2)
    compiled = Runtime(compile=True).compiled(layer)
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)
    assert list(compiled.parameters()) == list(layer.parameters())
    assert Runtime().compiled(layer) is layer
