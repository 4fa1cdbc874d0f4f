"""`stage1: {kind: pretrained, path: DIR}`: a diffusers AutoencoderKL or VQModel saved with
save_pretrained, frozen, read from its folder (f, latent channels, scaling), cached by a digest
of its weights, and a whole trial on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.vq_model import VQModel

from harness.config import Stage1Config, load_experiment
from harness.errors import ConfigError
from harness.keys import stage1_key
from harness.models import build_stage1
from harness.models.autoencoders.pretrained import PretrainedAutoencoder
from harness.sweep import expand
from harness.weights import WeightsStore
from tests.experiment.test_trial import run_in_process
from tests.helpers import TINY_EXPERIMENT, write_experiment
from tests.models.meta import META

# Two levels: f = 2, so 16 px images make 8x8 latents (tests/helpers.py's tiny data).
TINY_VAE = {"block_out_channels": (8, 8), "down_block_types": ("DownEncoderBlock2D",) * 2,
            "up_block_types": ("UpDecoderBlock2D",) * 2, "latent_channels": 2,
            "norm_num_groups": 4, "layers_per_block": 1, "sample_size": 16}
SCALING = 0.5


def save_vae(folder: Path, kind: str = "AutoencoderKL", seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = (AutoencoderKL(**TINY_VAE, scaling_factor=SCALING) if kind == "AutoencoderKL"
             else VQModel(**TINY_VAE, num_vq_embeddings=16, vq_embed_dim=3,
                          scaling_factor=SCALING))
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("kind", "channels"), [("AutoencoderKL", 2), ("VQModel", 3)])
def test_the_folder_gives_f_latent_channels_and_the_scaled_latent(tmp_path: Path, kind: str,
                                                                  channels: int) -> None:
    config = Stage1Config(kind="pretrained", path=str(save_vae(tmp_path / "vae", kind)))
    assert (config.f, config.latent_channels) == (2, channels)  # read from config.json
    model = build_stage1(config)
    assert isinstance(model, PretrainedAutoencoder)
    assert (model.f, model.latent_channels) == (2, channels)
    assert not any(p.requires_grad for p in model.parameters())
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    z = model.encode(x)
    assert z.shape == (2, channels, 8, 8) and model.decode(z).shape == x.shape
    inner = model.model
    raw = (inner.encode(x).latent_dist.mode() if kind == "AutoencoderKL"
           else inner.encode(x).latents)
    torch.testing.assert_close(z, raw * SCALING)  # z = E(x) * scaling_factor
    torch.testing.assert_close(model.decode(z), inner.decode(raw).sample)  # D(z / scaling)
    assert torch.equal(model.encode(x), z)  # the mode: deterministic


def test_it_trains_nothing_and_round_trips_through_its_state_dict(tmp_path: Path) -> None:
    from harness.stages.stage1 import train_stage1

    config = Stage1Config(kind="pretrained", path=str(save_vae(tmp_path / "vae")),
                          train_steps=50)
    images = np.zeros((4, 16, 16, 3), np.uint8)
    result = train_stage1(config, images)
    assert result.seconds == 0 and result.history == []
    rebuilt = build_stage1(config)  # what load_stage1 does with the cached model.pt
    rebuilt.load_state_dict(result.model.state_dict())
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(rebuilt.encode(x), build_stage1(config).encode(x))


def test_the_cache_key_follows_the_weights_not_the_folders_place(tmp_path: Path) -> None:
    def key(folder: Path) -> str:
        return stage1_key(Stage1Config(kind="pretrained", path=str(folder)), "data")

    first = key(save_vae(tmp_path / "vae"))
    assert key(shutil.copytree(tmp_path / "vae", tmp_path / "copy")) == first
    assert key(save_vae(tmp_path / "vae", seed=1)) != first  # other weights, same place


@pytest.mark.parametrize(("stage1", "key", "words"), [
    ({"f": 4}, "stage1.f", "has f=2; leave stage1.f out or set it to 2, got 4"),
    ({"latent_channels": 4}, "stage1.latent_channels", "has latent_channels=2"),
    ({"f": 2, "latent_channels": 2}, None, None),  # values that agree are fine
])
def test_an_explicit_f_or_latent_channels_must_agree_with_the_folder(
        tmp_path: Path, stage1: dict, key: str | None, words: str | None) -> None:
    folder = save_vae(tmp_path / "vae")
    path = write_experiment(tmp_path, stage1={"kind": "pretrained", "path": str(folder),
                                              **stage1})
    if key is None:
        assert expand(load_experiment(path))[0].config.stage1.f == 2
        return
    with pytest.raises(ConfigError) as caught:
        expand(load_experiment(path))
    assert caught.value.key == key and words in caught.value.message


def test_an_unsupported_class_or_a_folder_without_weights_names_stage1_path(tmp_path: Path
                                                                          ) -> None:
    folder = tmp_path / "unet"
    folder.mkdir()
    (folder / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    with pytest.raises(ConfigError) as caught:
        expand(load_experiment(write_experiment(tmp_path, stage1={"kind": "pretrained",
                                                                   "path": str(folder)})))
    assert caught.value.key == "stage1.path"
    assert "'UNet2DModel'; supported: AutoencoderKL, VQModel" in caught.value.message
    save_vae(tmp_path / "vae")
    (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ValueError, match="no weight files"):
        Stage1Config(kind="pretrained", path=str(tmp_path / "vae"))


def test_a_relative_path_is_taken_from_the_working_directory(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    save_vae(tmp_path / "vae")
    monkeypatch.chdir(tmp_path)
    assert Stage1Config(kind="pretrained", path="vae").path == str(tmp_path / "vae")


@pytest.mark.slow
def test_a_trial_runs_on_a_pretrained_stage1(tmp_path: Path, weights: WeightsStore) -> None:
    folder = save_vae(tmp_path / "vae")
    path = write_experiment(tmp_path, seeds=[0], stage1={
        "kind": "pretrained", "path": str(folder), "eval_images": 16,
        "eval_metrics": ["l1", "psnr", "ssim"]},
        stage2=TINY_EXPERIMENT["stage2"] | {"fusion": "add"})
    _, results = run_in_process(path, tmp_path)
    assert [result["status"] for result in results] == ["FINISHED"], results
    metrics = results[0]["metrics"]
    assert metrics["stage1/train_seconds"] == 0  # the stage-1 job trained nothing
    assert metrics["stage1/latent_c"] == 2 and metrics["stage1/latent_h"] == 8
    assert metrics["stage1/psnr"] > 0 and metrics["sample/num_images"] == 8
    cached = next((tmp_path / "cache" / "stage1").glob("*/model.pt"))
    state = torch.load(cached, weights_only=True)  # the folder's weights, untouched
    assert all(torch.equal(value, build_stage1(Stage1Config(
        kind="pretrained", path=str(folder))).state_dict()[name]) for name, value in state.items())


@pytest.mark.parametrize("kind", ["AutoencoderKL", "VQModel"])
def test_encode_and_decode_run_on_the_device_of_the_input(tmp_path: Path, kind: str) -> None:
    model = build_stage1(Stage1Config(kind="pretrained", path=str(save_vae(tmp_path, kind))))
    model = model.to(META)
    z = model.encode(torch.empty(2, 3, 16, 16, device=META))
    assert z.device == META and model.decode(z).device == META
