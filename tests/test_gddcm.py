"""gDDCM checked against closed forms: Gaussian data N(MU, S^2 I) has an exact denoiser."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.config import Stage2Config
from harness.diffusion.samplers import DDPMSampler
from harness.diffusion.schedules import NoiseSchedule, RectifiedFlow
from harness.errors import ConfigError, HarnessError
from harness.gddcm.api import decode, encode_with_reconstruction, tokenize_and_reconstruct
from harness.gddcm.codebook import BLOCK, codebook_blocks, gather, select, to_cells
from harness.gddcm.config import DEFAULT_NOISE_S, GDDCMConfig, noise_level, resolve_times
from harness.gddcm.marginal import DDPMMarginal, FlowMarginal, Marginal, solve_x0_eps
from harness.gddcm.model import TokenizerModel, pixel_model, write_card
from harness.gddcm.steps import back_trace, ddcm_step
from harness.gddcm.tokens import TokenFile
from harness.training_stage2 import build_fftd

MU, S = 0.5, 0.8
SHAPE = (2, 4, 4)  # C, H, W of the toy data


def exact_output(marginal: Marginal, x_t: torch.Tensor, t: float) -> torch.Tensor:
    """The ideal model output (eps, x0 or v) for Gaussian data at time t."""
    alpha, sigma = marginal.alpha(t), marginal.sigma(t)
    x0 = MU + alpha * S**2 / (alpha**2 * S**2 + sigma**2) * (x_t - alpha * MU)
    eps = (x_t - alpha * x0) / sigma if sigma > 0 else torch.zeros_like(x_t)
    a, b = marginal.output_coefficients(t)
    return a * x0 + b * eps


def gaussian_denoiser(marginal: Marginal):
    def model(x_t: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        t = float(time[0]) / marginal.flow.T if isinstance(marginal, FlowMarginal) else float(
            time[0])
        return exact_output(marginal, x_t, t)
    return model


def ddpm(prediction: str = "eps", T: int = 100) -> DDPMMarginal:
    return DDPMMarginal(NoiseSchedule.create("cosine", T), prediction)


def flow(prediction: str = "v") -> FlowMarginal:
    return FlowMarginal(RectifiedFlow(100), prediction)


def toy_model(marginal: Marginal, reference: torch.Tensor | None = None) -> TokenizerModel:
    return TokenizerModel(gaussian_denoiser(marginal), marginal, SHAPE, torch.as_tensor,
                          lambda x: x.numpy(), "toy", reference)


def gaussian_data(count: int, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> torch.Tensor:
    return MU + S * torch.randn(count, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("grid", [1, 2])
def test_selection_of_eq14_equals_a_brute_force_loop(grid: int) -> None:
    K = 2 * BLOCK + 37  # several generator blocks and a ragged end
    residual = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(5))
    chosen, noise = select(residual, seed=7, step=3, K=K, grid=grid, chunk=BLOCK)
    book = torch.cat([rows for _, rows in codebook_blocks(7, 3, K, residual[0].numel())])
    cells = to_cells(residual, grid).double()
    book_cells = to_cells(book.reshape(K, *SHAPE), grid).double()
    for b in range(3):
        for j in range(grid * grid):
            scores = [float(book_cells[j, k] @ cells[j, b]) for k in range(K)]
            assert chosen[b, j] == int(np.argmax(scores))
    assert torch.equal(chosen, select(residual, 7, 3, K, grid, chunk=2 * BLOCK)[0])
    assert torch.equal(noise, gather(chosen, 7, 3, K, tuple(residual.shape)))


def test_codebooks_are_regenerated_from_seed_and_step() -> None:
    index = torch.tensor([[0, 1500, 17, 2047]])
    one = gather(index, seed=1, step=4, K=2048, shape=(1, 4, 4, 4))
    assert torch.equal(one, gather(index, 1, 4, 2048, (1, 4, 4, 4)))
    assert not torch.equal(one, gather(index, 1, 5, 2048, (1, 4, 4, 4)))
    assert not torch.equal(one, gather(index, 2, 4, 2048, (1, 4, 4, 4)))
    # cell (0, 1) of the 2x2 grid is taken from row 1500
    row = torch.cat([rows for _, rows in codebook_blocks(1, 4, 2048, 64)])
    torch.testing.assert_close(one[0, :, :2, 2:], row[1500].reshape(4, 4, 4)[:, :2, 2:])


@pytest.mark.parametrize("marginal", [ddpm("eps"), ddpm("v"), ddpm("x0"), flow("v"),
                                      flow("eps"), flow("x0")], ids=str)
def test_eq16_solves_any_output_for_x0_and_eps(marginal: Marginal) -> None:
    generator = torch.Generator().manual_seed(0)
    x, eps = torch.randn(6, 3, generator=generator), torch.randn(6, 3, generator=generator)
    t = 37 if marginal.discrete else 0.37
    x_t = marginal.alpha(t) * x + marginal.sigma(t) * eps
    a, b = marginal.output_coefficients(t)
    x0_hat, eps_hat = solve_x0_eps(marginal, a * x + b * eps, x_t, t)
    torch.testing.assert_close(x0_hat, x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(eps_hat, eps, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("marginal", "t", "dt"), [(flow(), 0.6, 0.004),
                                                   (ddpm(T=1000), 600, 2)], ids=["flow", "ddpm"])
@pytest.mark.parametrize("p", [0.0, 0.3, 0.5])
def test_eq22_keeps_the_marginal_of_eq8(marginal: Marginal, t: float, dt: float,
                                        p: float) -> None:
    x = gaussian_data(40000, shape=(2,))
    generator = torch.Generator().manual_seed(1)
    x_t = marginal.alpha(t) * x + marginal.sigma(t) * torch.randn(x.shape, generator=generator)
    x0, eps = solve_x0_eps(marginal, exact_output(marginal, x_t, t), x_t, t)
    t_next = t - p * dt
    if marginal.discrete:
        t_next = round(t_next)
    moved = back_trace(marginal, x0, eps, torch.randn(x.shape, generator=generator),
                       t - dt, t_next)
    alpha, sigma = marginal.alpha(t_next), marginal.sigma(t_next)
    assert moved.mean().item() == pytest.approx(alpha * MU, abs=0.01)
    assert moved.var().item() == pytest.approx(alpha**2 * S**2 + sigma**2, rel=0.02)


def test_p_half_in_discrete_time_is_the_ddcm_update() -> None:
    """DDCM: DDPM's ancestral step with its noise replaced by the chosen codebook row."""
    marginal = ddpm("eps", T=200)
    sampler = DDPMSampler(marginal.schedule, "eps")
    x_t = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(2))
    target = gaussian_data(4, seed=3)
    for t in (150, 40, 1):
        output = exact_output(marginal, x_t, t)
        x0, eps = solve_x0_eps(marginal, output, x_t, t)
        eps_c = select(target - x0, seed=0, step=t, K=256, grid=1)[1]
        noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(t))
        mean = sampler.step(output, t, t - 1, x_t, torch.Generator().manual_seed(t)) - (
            sampler.posterior_variance(t) ** 0.5 * noise)
        expected = mean + sampler.posterior_variance(t) ** 0.5 * eps_c
        got = ddcm_step(marginal, x0, eps, eps_c, t, t - 1, p=0.5)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("marginal", "p", "init", "grid"), [
    (flow(), 0.0, 1, 1), (flow(), 0.3, 2, 2), (ddpm(), 0.0, 3, 2), (ddpm(), 0.5, 4, 1),
    (ddpm("v"), 0.7, 1, 4)], ids=str)
def test_decode_rebuilds_the_encoder_reconstruction_bit_for_bit(
        marginal: Marginal, p: float, init: int, grid: int, tmp_path) -> None:
    model = toy_model(marginal, reference=gaussian_data(16, seed=9))
    data = gaussian_data(5, seed=4)
    cfg = GDDCMConfig(p=p, K=128, N=12, P=4, grid=grid, init=init, seed=3, batch_size=2,
                      t_s=20 if marginal.discrete else 0.2)
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


def test_tokens_decode_identically_in_a_second_process(tmp_path) -> None:
    config = Stage2Config(channels=8, channel_mult=[1], heads=2, attention_resolution=4,
                          T=50, prediction="eps")
    torch.manual_seed(0)
    denoiser = build_fftd(config, 3, 8).eval()
    torch.save(denoiser.state_dict(), tmp_path / "ema.pt")
    write_card(tmp_path, config, (3, 8, 8))
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    command = [sys.executable, "-m", "harness.cli", "tokenize"]
    subprocess.run([*command, "encode", "--model", str(tmp_path), "--images",
                    str(tmp_path / "images.npy"), "--out", str(tmp_path / "tokens.npz"),
                    "--set", "K=64", "--set", "N=6", "--set", "P=3", "--set", "t_s=10",
                    "--set", "final_steps=3", "--set", "batch_size=2"], check=True)
    tokens = TokenFile.load(tmp_path / "tokens.npz")
    model = pixel_model(denoiser, config, (3, 8, 8), str(tmp_path))
    _, here = encode_with_reconstruction(model, images, GDDCMConfig.load(tokens.meta["config"]))
    assert np.array_equal(TokenFile.load(tmp_path / "tokens.npz").indices, tokens.indices)
    subprocess.run([*command, "decode", str(tmp_path / "tokens.npz"), "--out",
                    str(tmp_path / "recon.npz")], check=True)
    with np.load(tmp_path / "recon.npz") as recon:
        assert np.array_equal(recon["data"], here.numpy())
        assert recon["images"].shape == images.shape and recon["images"].dtype == np.uint8


@pytest.mark.parametrize(("values", "key"), [
    ({"p": 1.0}, "gddcm.p"), ({"p": -0.1}, "gddcm.p"), ({"K": 0}, "gddcm.K"),
    ({"N": -3}, "gddcm.N"), ({"grid": 0}, "gddcm.grid"), ({"init": 5}, "gddcm.init"),
    ({"K": "many"}, "gddcm.K"), ({"colour": 1}, "gddcm.colour"),
    ({"noise_s": 0}, "gddcm.noise_s"), ({"t_s": 10, "noise_s": 0.3}, "gddcm")])
def test_invalid_settings_name_their_key(values: dict, key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        GDDCMConfig.load(values, "exp.yaml")
    assert raised.value.key == key and "exp.yaml" in str(raised.value)


@pytest.mark.parametrize(("values", "marginal", "key"), [
    ({"t_s": 100}, ddpm(T=100), "gddcm.t_s"), ({"t_r": 1.5}, flow(), "gddcm.t_r"),
    ({"t_s": 2.5}, ddpm(T=100), "gddcm.t_s"), ({"p": 0.5, "N": 500}, ddpm(T=100), "gddcm.N"),
    ({"grid": 3}, flow(), "gddcm.grid"), ({"init": 3}, flow(), "gddcm.init"),
    ({"noise_s": 1e4}, ddpm(T=100), "gddcm.noise_s")])
def test_times_outside_the_model_range_name_their_key(values: dict, marginal: Marginal,
                                                      key: str) -> None:
    from harness.gddcm.api import make_tokenizer

    with pytest.raises(ConfigError) as raised:
        make_tokenizer(toy_model(marginal), GDDCMConfig(**values))
    assert raised.value.key == key


@pytest.mark.parametrize("marginal", [ddpm(T=100), ddpm(T=1000), flow()], ids=str)
def test_default_ts_is_one_noise_level_in_every_variant(marginal: Marginal) -> None:
    t_s = resolve_times(GDDCMConfig(), marginal).t_s
    if marginal.discrete:  # the nearest timestep: its neighbours are further off (log scale)
        def off(t: float) -> float:
            return abs(np.log(noise_level(marginal, t) / DEFAULT_NOISE_S))
        assert off(t_s) <= min(off(t_s - 1), off(t_s + 1))
    else:
        assert noise_level(marginal, t_s) == pytest.approx(DEFAULT_NOISE_S, rel=1e-9)
    assert resolve_times(GDDCMConfig(noise_s=1.0), marginal).t_s > t_s
    middle = marginal.t_max // 2 if marginal.discrete else marginal.t_max / 2
    assert resolve_times(GDDCMConfig(t_s=middle), marginal).t_s == middle  # t_s wins
