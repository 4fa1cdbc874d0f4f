"""Models by name: the registries list kinds without importing a model, build them on use,
and a new stage-2 kind is one file plus its registration (tests/models/tiny_denoiser.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.config import Stage2Config
from harness.errors import ConfigError
from harness.models import STAGE1, STAGE2, build_stage2
from harness.weights import WeightsStore
from tests.experiment.test_trial import run_in_process
from tests.helpers import REPO, write_experiment
from tests.models import tiny_denoiser


def test_kinds_are_listed_without_importing_a_model() -> None:
    script = ("import sys\nfrom harness.models import STAGE1, STAGE2\n"
              "print(STAGE1.names(), STAGE2.names(), 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.split() == ["['conv_ae',", "'ivq_vae',", "'kl',", "'identity',",
                                     "'pretrained']", "['fftd',", "'unet2d',", "'dit']",
                                     "False"], result.stderr


def test_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown stage-2 model kind 'unet'.*fftd"):
        Stage2Config(kind="unet")
    with pytest.raises(KeyError, match="unknown stage-1 model kind 'vqgan'"):
        STAGE1.builder("vqgan")


def test_a_registered_kind_is_built_from_its_config() -> None:
    assert "tiny_conv" in STAGE2.names()
    model = build_stage2(Stage2Config(kind="tiny_conv", channels=8), 4, 8)
    assert isinstance(model, tiny_denoiser.TinyConvDenoiser)


@pytest.mark.slow
def test_a_trial_runs_on_a_new_stage2_kind(tmp_path: Path, weights: WeightsStore) -> None:
    """The whole trial (train, cache, sample, metrics) on the kind the test file added."""
    path = write_experiment(tmp_path, seeds=[0], stage2={
        "kind": "tiny_conv", "channels": 8, "T": 50, "train_steps": 5, "batch_size": 4})
    # (fusion, an FFTD setting, keeps its default and is not swept here)
    uri, results = run_in_process(path, tmp_path)
    assert [result["status"] for result in results] == ["FINISHED"], results
    run = MlflowClient(uri).get_run(results[0]["run_id"])
    assert run.data.params["stage2.kind"] == "tiny_conv"
    latent_channels, latent_size = 2, 8  # TINY_EXPERIMENT's stage 1 on 16x16 images
    params = sum(p.numel() for p in build_stage2(Stage2Config(kind="tiny_conv", channels=8),
                                                 latent_channels, latent_size).parameters())
    assert run.data.metrics["stage2/params"] == params
    assert run.data.metrics["sample/num_images"] == 8


def test_a_kind_unknown_to_the_registry_is_a_config_error_naming_the_key(tmp_path: Path
                                                                         ) -> None:
    from harness.config import load_experiment
    from harness.sweep import expand

    path = write_experiment(tmp_path, stage2={"kind": "unet"})
    with pytest.raises(ConfigError) as caught:
        expand(load_experiment(path))
    assert caught.value.key == "stage2.kind"
