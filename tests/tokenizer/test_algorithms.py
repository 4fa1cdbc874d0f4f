"""harness.tokenizer.algorithms: Eq. 16 as the tokenizer applies it to the model output (through
harness.diffusion.objectives), and the token count of Algorithms 1 and 2."""

from __future__ import annotations

import pytest
import torch

from harness.config import GDDCMConfig
from harness.diffusion.objectives import predict_x0_eps
from harness.tokenizer.algorithms import ReplayTokens, SelectTokens, Tokenizer
from harness.tokenizer.api import make_tokenizer
from harness.tokenizer.inits import initial_state
from harness.tokenizer.model import TokenizerModel
from harness.tokenizer.timesteps import fixed_point_schedule
from tests.models.meta import META, meta_fftd
from tests.tokenizer.gaussian import SHAPE, Variant, ddpm, flow, output_coefficients, toy_model

VARIANTS = [ddpm("eps"), ddpm("v"), ddpm("x0"), flow("v"), flow("eps"), flow("x0")]


def time_of(variant: Variant) -> float:
    return 37 if variant.process.discrete else 0.37


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_eq16_solves_any_output_for_x0_and_eps(variant: Variant) -> None:
    """o = a x0 + b eps and x_t = alpha x0 + sigma eps (Eq. 8) give back x0 and eps; the
    output itself comes back unchanged where it is eps or x0 (no alpha * o / alpha)."""
    process, t = variant.process, time_of(variant)
    generator = torch.Generator().manual_seed(0)
    x, eps = torch.randn(6, 3, generator=generator), torch.randn(6, 3, generator=generator)
    alpha, sigma = process.alpha(t), process.sigma(t)
    x_t = alpha * x + sigma * eps
    a, b = output_coefficients(variant, t)
    output = a * x + b * eps
    x0_hat, eps_hat = predict_x0_eps(process, variant.prediction, output, x_t, t)
    torch.testing.assert_close(x0_hat, x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(eps_hat, eps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alpha * x0_hat + sigma * eps_hat, x_t, rtol=1e-6, atol=1e-6)
    if variant.prediction == "eps":
        assert torch.equal(eps_hat, output)
    if variant.prediction == "x0":
        assert torch.equal(x0_hat, output)


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_the_tokenizer_feeds_the_model_its_time_and_solves_its_output(variant: Variant
                                                                      ) -> None:
    process, t = variant.process, time_of(variant)
    seen: list[torch.Tensor] = []
    output = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(1))

    def denoiser(x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        seen.append(time)
        return output.double()  # the tokenizer computes in float32 whatever the model gives

    model = TokenizerModel(denoiser, process, variant.prediction, SHAPE, torch.as_tensor,
                           lambda x: x.numpy())
    tokenizer = make_tokenizer(model, GDDCMConfig(K=16, N=4, P=2))
    x_t = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(2))
    x0, eps = tokenizer.predict(x_t, t)
    assert torch.equal(seen[0], process.model_time(t, 3))
    expected = predict_x0_eps(process, variant.prediction, output, x_t, t)
    assert x0.dtype == eps.dtype == torch.float32
    assert torch.equal(x0, expected[0]) and torch.equal(eps, expected[1])
    torch.testing.assert_close(process.alpha(t) * x0 + process.sigma(t) * eps, x_t,
                               rtol=1e-5, atol=1e-5)


def tokenizer(variant: Variant, **settings: float) -> Tokenizer:
    return make_tokenizer(toy_model(variant), GDDCMConfig(**settings))


def test_algorithm_1_takes_one_token_per_step_from_t_r() -> None:
    one = tokenizer(ddpm(), p=0.5, N=12, K=16)
    assert one.token_count() == 12 and one.start_time() == one.times.t_r == 99


@pytest.mark.parametrize("variant", [ddpm(), flow()], ids=str)
def test_algorithm_2_takes_the_repeats_of_eq10_at_t_s(variant: Variant) -> None:
    two = tokenizer(variant, p=0.0, N=40, P=4, K=16)
    schedule = fixed_point_schedule(4, 40, two.times.dt_min, two.times.dt_max, 80.0, 7.0,
                                    variant.process.discrete)
    assert two.token_count() == sum(count for _, count in schedule) > 0
    assert two.start_time() == two.times.t_s


@pytest.mark.parametrize(("variant", "p"), [(ddpm(), 0.0), (ddpm("v"), 0.5), (flow(), 0.0),
                                            (flow("x0"), 0.3)], ids=str)
def test_the_encode_and_decode_loops_run_on_the_models_device(variant: Variant, p: float
                                                              ) -> None:
    """Model times, codebooks (drawn on the CPU), selection and the steps of Algorithms 1
    and 2 follow the model onto meta; decoding's tokens stay CPU data, as read from a file."""
    model = TokenizerModel(meta_fftd(SHAPE[0], SHAPE[1], variant.process.T), variant.process,
                           variant.prediction, SHAPE, torch.as_tensor, lambda x: x.numpy())
    assert model.device == META
    tokenizer = make_tokenizer(model, GDDCMConfig(p=p, K=64, N=4, P=2, grid=2, final_steps=2))
    x = torch.empty(3, *SHAPE, device=META)
    start = initial_state(2, variant.process, tokenizer.start_time(), tuple(x.shape), 1, 64, 0,
                          None, None, META)
    chooser = SelectTokens(x, 1, 64, 2)
    assert tokenizer.run(start, chooser).device == META
    assert len(chooser.tokens) == tokenizer.token_count()
    assert all(index.device == META for index in chooser.tokens)
    tokens = torch.zeros(3, tokenizer.token_count(), 4, dtype=torch.int32)
    assert tokenizer.run(start, ReplayTokens(tokens, 1, 64)).device == META
