"""Your own model by import path, `kind: "package.module:ClassName"`: the schema takes the
path without importing it, a build imports and checks the class, and every error names the
key and what is missing; the shipped example (examples/custom_denoiser.yaml) runs a trial."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from harness.config import Stage1Config, Stage2Config, deep_merge, load_experiment
from harness.errors import HarnessError
from harness.models import build_stage1, build_stage2
from harness.models.autoencoders.base import Stage1Output
from harness.models.imported import ImportedStage1, ModelInterfaceError
from harness.sweep import expand
from harness.weights import WeightsStore
from tests.experiment.test_trial import run_in_process
from tests.helpers import REPO

HERE = "tests.models.test_imported"
EXAMPLE = REPO / "examples" / "custom_denoiser.yaml"


class PoolCodec(nn.Module):
    """Nothing to train: E = 2x2 average pooling, D = nearest upsampling."""

    f, latent_channels = 2, 3

    def __init__(self, config: Stage1Config) -> None:
        super().__init__()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return F.interpolate(z, scale_factor=2.0)


class TinyAutoencoder(PoolCodec):
    """Trainable: a 1x1 convolution after the pooling, with the training forward."""

    def __init__(self, config: Stage1Config) -> None:
        super().__init__(config)
        self.mix = nn.Conv2d(3, 3, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(super().encode(x))

    def autoencode(self, x: torch.Tensor) -> Stage1Output:
        return Stage1Output(self.decode(self.encode(x)), x.new_zeros(()))


class EncoderOnly(nn.Module):
    """Trainable, no decode, no autoencode, no latent_channels."""

    f = 2

    def __init__(self, config: Stage1Config) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 2, stride=2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class TakesNoConfig(PoolCodec):
    def __init__(self) -> None:
        super().__init__(Stage1Config())


class NotAModule:
    def __init__(self, config: Stage1Config) -> None:
        pass


class NoForward(nn.Module):
    def __init__(self, config: Stage2Config, latent_channels: int, latent_size: int) -> None:
        super().__init__()


class ForwardOfOne(NoForward):
    def forward(self, z_t: torch.Tensor) -> torch.Tensor:
        return z_t


class Stage2OfOne(NoForward):
    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return z_t


def stage1(name: str, **settings: object) -> Stage1Config:
    return Stage1Config(kind=f"{HERE}:{name}", **({"f": 2, "latent_channels": 3} | settings))


def test_the_schema_takes_an_import_path_without_importing_it() -> None:
    config = Stage2Config(kind="no_such_package.denoisers:Mine")
    assert config.kind == "no_such_package.denoisers:Mine"
    assert "no_such_package" not in sys.modules
    with pytest.raises(ValueError, match="not an import path of the form"):
        Stage2Config(kind="no_such_package:Mine:more")


@pytest.mark.parametrize(("kind", "words"), [
    ("no_such_package.denoisers:Mine", "stage2.kind: cannot import module "
                                       "'no_such_package.denoisers' of "
                                       "'no_such_package.denoisers:Mine'"),
    (f"{HERE}:Missing", f"stage2.kind: module '{HERE}' ("),
])
def test_an_import_error_names_the_key_and_the_path(kind: str, words: str) -> None:
    with pytest.raises(HarnessError) as caught:
        build_stage2(Stage2Config(kind=kind), 3, 8)
    assert words in str(caught.value)
    assert "has no 'Missing'" in str(caught.value) or "No module named" in str(caught.value)


def test_a_stage1_class_without_parameters_needs_encode_decode_f_latent_channels() -> None:
    model = build_stage1(stage1("PoolCodec"))
    assert isinstance(model, ImportedStage1) and isinstance(model.model, PoolCodec)
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert model.encode(x).shape == (2, 3, 4, 4)
    assert model(x).shape == x.shape  # reconstruct's forward: decode(encode(x))
    assert model.parameter_count() == 0


def test_a_trainable_stage1_class_trains_through_its_autoencode() -> None:
    from harness.stages.stage1 import train_stage1

    config = stage1("TinyAutoencoder", perceptual_weight=0, adversarial_weight=0,
                    train_steps=2, batch_size=2, log_every=1)
    result = train_stage1(config, np.zeros((4, 8, 8, 3), np.uint8))
    assert len(result.history) == 2
    rebuilt = build_stage1(config)  # the cache's round trip
    rebuilt.load_state_dict(result.model.state_dict())


@pytest.mark.parametrize(("name", "settings", "words"), [
    ("EncoderOnly", {"adversarial_weight": 0},
     f"stage1.kind: {HERE}:EncoderOnly lacks decode(), autoencode() (it has parameters to "
     "train), attribute latent_channels (an int); a stage-1 model has encode(x), decode(z)"),
    ("TinyAutoencoder", {},  # the GAN term is on by default
     "lacks last_layer() (for the GAN term: stage1.adversarial_weight > 0)"),
    ("PoolCodec", {"f": 4}, "stage1.f: 4, but tests.models.test_imported:PoolCodec has f=2; "
                            "set stage1.f: 2"),
    ("PoolCodec", {"latent_channels": 4}, "stage1.latent_channels: 4, but"),
    ("TakesNoConfig", {}, "is called as ClassName(config: Stage1Config), which its signature "
                          "does not take"),
    ("NotAModule", {}, "made a NotAModule, not a torch.nn.Module"),
])
def test_a_stage1_class_missing_part_of_the_interface_is_an_error_saying_what(
        name: str, settings: dict, words: str) -> None:
    with pytest.raises(ModelInterfaceError) as caught:
        build_stage1(stage1(name, **settings))
    assert words in str(caught.value)


@pytest.mark.parametrize(("name", "words"), [
    ("NoForward", f"stage2.kind: {HERE}:NoForward lacks forward()"),
    ("ForwardOfOne", f"stage2.kind: {HERE}:ForwardOfOne.forward(z_t: 'torch.Tensor') -> "
                     "'torch.Tensor' does not take (z_t, t)"),
])
def test_a_stage2_class_needs_forward_of_z_t_and_t(name: str, words: str) -> None:
    with pytest.raises(ModelInterfaceError) as caught:
        build_stage2(Stage2Config(kind=f"{HERE}:{name}"), 3, 8)
    assert words in str(caught.value)
    assert isinstance(build_stage2(Stage2Config(kind=f"{HERE}:Stage2OfOne"), 3, 8), Stage2OfOne)


def test_the_example_experiment_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    (trial,) = expand(load_experiment(EXAMPLE))
    assert trial.config.stage2.kind == "examples.custom_denoiser:ConvDenoiser"
    model = build_stage2(trial.config.stage2, 4, 8)
    assert model(torch.randn(2, 4, 8, 8), torch.tensor([0.5, 199.0])).shape == (2, 4, 8, 8)


@pytest.mark.slow
def test_the_example_experiments_trial_runs(tmp_path: Path, weights: WeightsStore) -> None:
    raw = deep_merge(yaml.safe_load(EXAMPLE.read_text()), {
        "dataset": str(REPO / "data_manifests" / "synthetic_shapes.yaml"),
        "stage1": {"train_steps": 5, "perceptual_weight": 0, "eval_images": 16,
                   "eval_metrics": ["l1", "psnr"]},
        "stage2": {"train_steps": 3, "batch_size": 8},
        "sample": {"ddim_steps": 3, "num_samples": 8, "batch_size": 8},
        "eval": {"metrics": [], "num_images": 16}})
    path = tmp_path / "custom_denoiser.yaml"
    path.write_text(yaml.safe_dump(raw))
    _, results = run_in_process(path, tmp_path)
    assert [result["status"] for result in results] == ["FINISHED"], results
    metrics = results[0]["metrics"]
    assert metrics["stage2/params"] > 0 and metrics["sample/num_images"] == 8
