"""harness.tokenizer.api: encode / decode / tokenize_and_reconstruct on the Gaussian toy model
(closed forms), and on a real stage-2 denoiser across two Python processes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cli.tokenize import load_model
from harness.config import GDDCMConfig, Stage2Config
from harness.diffusion.processes import DDPM
from harness.errors import ConfigError, HarnessError
from harness.models import build_stage2
from harness.stages.stage2 import WEIGHTS, write_card
from harness.tokenizer.api import (
    decode,
    encode_with_reconstruction,
    make_tokenizer,
    tokenize_and_reconstruct,
)
from harness.tokenizer.model import TokenizerModel
from harness.tokenizer.tokens import TokenFile
from tests.helpers import run_harness
from tests.models.meta import META
from tests.tokenizer.gaussian import SHAPE, Variant, ddpm, flow, gaussian_data, toy_model


@pytest.mark.parametrize(("variant", "p", "init", "grid"), [
    (flow(), 0.0, 1, 1), (flow(), 0.3, 2, 2), (ddpm(), 0.0, 3, 2), (ddpm(), 0.5, 4, 1),
    (ddpm("v"), 0.7, 1, 4)], ids=str)
def test_decode_rebuilds_the_encoder_reconstruction_bit_for_bit(
        variant: Variant, p: float, init: int, grid: int, tmp_path: Path) -> None:
    model = toy_model(variant, reference=gaussian_data(16, seed=9))
    data = gaussian_data(5, seed=4)
    cfg = GDDCMConfig(p=p, K=128, N=12, P=4, grid=grid, init=init, seed=3, batch_size=2,
                      t_s=20 if variant.process.discrete else 0.2)
    tokens, reconstruction = encode_with_reconstruction(model, data, cfg)
    loaded = TokenFile.load(tokens.save(tmp_path / "tokens.npz"))
    assert torch.equal(decode(model, loaded), reconstruction)
    assert loaded.indices.shape == (5, tokens.meta["tokens_per_cell"], grid * grid)
    # the tokens carry the information: another image's tokens decode to another image
    other = encode_with_reconstruction(model, gaussian_data(5, seed=5), cfg)[1]
    assert not torch.equal(other, reconstruction)


def test_a_token_file_made_at_other_times_is_refused() -> None:
    model = toy_model(ddpm())
    tokens = encode_with_reconstruction(model, gaussian_data(2), GDDCMConfig(K=16, N=4, P=2))[0]
    tokens.meta["times"]["t_s"] += 1  # as if made when the default T_s was elsewhere
    with pytest.raises(HarnessError, match="made at times"):
        decode(model, tokens)


@pytest.mark.parametrize("other", [ddpm("v"), ddpm("eps", T=200), flow("eps")], ids=str)
def test_a_token_file_of_another_process_or_prediction_is_refused(other: Variant) -> None:
    tokens = encode_with_reconstruction(toy_model(ddpm("eps")), gaussian_data(2),
                                        GDDCMConfig(K=16, N=4, P=2, t_s=20))[0]
    with pytest.raises(HarnessError, match="token file was made with"):
        decode(toy_model(other), tokens)


def test_tokens_bring_the_reconstruction_closer_as_k_grows() -> None:
    model = toy_model(flow())
    data = gaussian_data(8, seed=4)
    errors = []
    for K in (2, 256):
        cfg = GDDCMConfig(p=0.0, K=K, N=40, P=4, t_s=0.3, final_steps=4)
        pictures, tokens, seconds = tokenize_and_reconstruct(model, data, cfg)
        errors.append(float(np.mean((pictures - data.numpy()) ** 2)))
        assert seconds > 0 and tokens.bits_per_image == (
            tokens.meta["tokens_per_cell"] + 1) * np.log2(K)
    assert errors[1] < 0.7 * errors[0]


@pytest.mark.parametrize(("values", "variant", "key"), [
    ({"t_s": 100}, ddpm(T=100), "gddcm.t_s"), ({"t_r": 1.5}, flow(), "gddcm.t_r"),
    ({"t_s": 2.5}, ddpm(T=100), "gddcm.t_s"), ({"p": 0.5, "N": 500}, ddpm(T=100), "gddcm.N"),
    ({"grid": 3}, flow(), "gddcm.grid"), ({"init": 3}, flow(), "gddcm.init"),
    ({"noise_s": 1e4}, ddpm(T=100), "gddcm.noise_s")])
def test_settings_the_model_cannot_run_name_their_key(values: dict, variant: Variant,
                                                      key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_tokenizer(toy_model(variant), GDDCMConfig(**values))
    assert raised.value.key == key


def run_cli(args: list[str], cwd: Path) -> None:
    """`harness ARGS` in a new Python process, with this process's torch thread count so
    that its reductions are split the same way."""
    result = run_harness(args, cwd, OMP_NUM_THREADS=str(torch.get_num_threads()))
    assert result.returncode == 0, result.stderr


def test_tokens_decode_identically_in_a_second_process(tmp_path: Path) -> None:
    """The CLI encodes in one process and decodes in another; both must give exactly what
    encoding gives in this one."""
    config = Stage2Config(channels=8, channel_mult=[1], heads=2, attention_resolution=4,
                          T=50, prediction="eps")
    torch.manual_seed(0)
    torch.save(build_stage2(config, 3, 8).state_dict(), tmp_path / WEIGHTS)
    write_card(tmp_path, config, (3, 8, 8))  # a pixel-space model: no stage 1
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    settings = {"K": 64, "N": 6, "P": 3, "t_s": 10, "final_steps": 3, "batch_size": 2}
    run_cli(["tokenize", "encode", "--model", str(tmp_path), "--images",
             str(tmp_path / "images.npy"), "--out", str(tmp_path / "tokens.npz"),
             *[f"--set={key}={value}" for key, value in settings.items()]], tmp_path)
    run_cli(["tokenize", "decode", str(tmp_path / "tokens.npz"), "--out",
             str(tmp_path / "recon.npz")], tmp_path)  # the model found by its reference

    model = load_model(tmp_path)
    tokens_here, here = encode_with_reconstruction(model, images, GDDCMConfig(**settings))
    tokens = TokenFile.load(tmp_path / "tokens.npz")
    assert tokens.meta == tokens_here.meta and tokens.meta["model_ref"] == str(tmp_path.resolve())
    assert np.array_equal(tokens.indices, tokens_here.indices)
    assert tokens.init_indices is not None and tokens_here.init_indices is not None
    assert np.array_equal(tokens.init_indices, tokens_here.init_indices)
    with np.load(tmp_path / "recon.npz") as recon:
        assert recon["data"].dtype == np.float32
        assert np.array_equal(recon["data"], here.numpy())
        assert recon["images"].shape == images.shape and recon["images"].dtype == np.uint8
        assert np.array_equal(recon["images"], model.to_images(here))
    # The comparison can fail: one token changed decodes that image to other numbers.
    changed = replace(tokens, indices=tokens.indices.copy())
    changed.indices[0, 0, 0] = (changed.indices[0, 0, 0] + 1) % settings["K"]
    assert not np.array_equal(decode(model, changed)[0].numpy(), here[0].numpy())


@pytest.mark.parametrize(("init", "p"), [(1, 0.0), (2, 0.5), (3, 0.0), (4, 0.3)])
def test_a_token_file_decodes_on_the_device_of_the_model(init: int, p: float) -> None:
    """Encoded on the CPU, decoded by the same network moved to meta: the token arrays, the
    init draws and the codebooks are CPU data moved to the model's device."""
    config = Stage2Config(channels=8, channel_mult=[1, 2], heads=2, attention_resolution=4,
                          T=50)
    torch.manual_seed(0)
    network = build_stage2(config, SHAPE[0], SHAPE[1]).eval()

    def model(denoiser: torch.nn.Module) -> TokenizerModel:
        return TokenizerModel(denoiser, DDPM.create("cosine", 50), "eps", SHAPE,
                              torch.as_tensor, lambda x: x.numpy(), "net",
                              gaussian_data(6, seed=9))

    cfg = GDDCMConfig(p=p, K=64, N=4, P=2, grid=2, init=init, batch_size=2, t_s=20,
                      final_steps=2)
    tokens = encode_with_reconstruction(model(network), gaussian_data(3, seed=4), cfg)[0]
    on_meta = model(network.to(META))
    assert on_meta.device == META
    reconstruction = decode(on_meta, tokens)
    assert reconstruction.device == META and reconstruction.shape == (3, *SHAPE)


def test_a_model_without_weights_runs_on_the_cpu() -> None:
    assert toy_model(ddpm()).device == torch.device("cpu")
