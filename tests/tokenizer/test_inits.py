"""harness.tokenizer.inits: the four initial states of Sec. 3.1.3, reproducible per image."""

from __future__ import annotations

import pytest
import torch

from harness.tokenizer.codebook import INIT_STEP, gather, select
from harness.tokenizer.inits import init_noise, init_tokens, initial_state
from tests.models.meta import META
from tests.tokenizer.gaussian import SHAPE, ddpm, gaussian_data

SEED, K = 3, 64


def test_init_noise_of_an_image_does_not_depend_on_its_batch() -> None:
    whole = init_noise(SEED, 0, (5, *SHAPE))
    assert torch.equal(init_noise(SEED, 3, (2, *SHAPE)), whole[3:])
    assert not torch.equal(whole[0], whole[1])
    assert not torch.equal(init_noise(SEED + 1, 0, (5, *SHAPE)), whole)


def test_each_strategy_starts_where_section_3_1_3_says() -> None:
    process, t = ddpm().process, 60
    alpha, sigma = process.alpha(t), process.sigma(t)
    x = gaussian_data(4, seed=1)
    shape = tuple(x.shape)
    tokens = init_tokens(1, x, SEED, K, grid=2)
    assert tokens is not None and tokens.shape == (4, 4)
    assert torch.equal(tokens, select(x, SEED, INIT_STEP, K, 2)[0])  # Eq. 15
    assert all(init_tokens(strategy, x, SEED, K, 2) is None for strategy in (2, 3, 4))

    def start(strategy: int, reference: torch.Tensor | None = None) -> torch.Tensor:
        return initial_state(strategy, process, t, shape, SEED, K, 2,
                             tokens if strategy == 1 else None, reference)

    torch.testing.assert_close(start(1), sigma * gather(tokens, SEED, INIT_STEP, K, shape))
    noise = init_noise(SEED, 2, shape)
    torch.testing.assert_close(start(2), sigma * noise)
    reference = gaussian_data(4, seed=2)
    torch.testing.assert_close(start(3, reference), alpha * reference + sigma * noise)
    assert torch.equal(start(4), torch.zeros(shape))
    with pytest.raises(ValueError, match=r"1\.\.4"):
        start(5)


def test_initial_states_are_made_on_the_device_asked_for() -> None:
    """Tokens and references read from a token file are CPU data; the state is on `device`
    (by default the device of the data it is made from)."""
    process, t, shape = ddpm().process, 60, (4, *SHAPE)
    tokens, reference = torch.zeros(4, 4, dtype=torch.long), gaussian_data(4, seed=2)
    for strategy in (1, 2, 3, 4):
        state = initial_state(strategy, process, t, shape, SEED, K, 0, tokens, reference, META)
        assert state.device == META and state.shape == shape
    assert initial_state(3, process, t, shape, SEED, K, 0, None, reference.to(META)
                         ).device == META
    assert torch.equal(initial_state(2, process, t, shape, SEED, K, 0, None, None, "cpu"),
                       initial_state(2, process, t, shape, SEED, K, 0, None, None))
