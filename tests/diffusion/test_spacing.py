"""Timestep spacings: S distinct steps of 0..T-1, noisiest first; linspace is DDIM's grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.diffusion import SPACINGS
from harness.diffusion.processes import DDPM
from harness.diffusion.samplers import DDIMSampler
from harness.diffusion.spacing import quadratic_timesteps, spaced_timesteps


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize(("T", "S"), [(1, 1), (8, 4), (20, 20), (500, 50), (500, 499),
                                      (1000, 3), (1000, 100), (1000, 1000)])
def test_every_spacing_gives_s_distinct_descending_timesteps(spacing: str, T: int,
                                                             S: int) -> None:
    steps = spaced_timesteps(spacing, T, S)
    assert len(steps) == len(set(steps)) == S
    assert steps == sorted(steps, reverse=True)
    assert steps[-1] >= 0 and steps[0] <= T - 1


def test_linspace_is_the_ddim_grid_of_before() -> None:
    """The grid DDIM took before spacings existed, written out: the default stays bit for bit."""
    for T, S in ((500, 50), (1000, 10), (20, 5), (20, 20), (1000, 999)):
        before = torch.linspace(0, T - 1, S, dtype=torch.float64).round().long()
        assert spaced_timesteps("linspace", T, S) == sorted(set(before.tolist()), reverse=True)
        assert DDIMSampler(DDPM.create("linear", T), S).timesteps() == \
            spaced_timesteps("linspace", T, S)


def test_leading_and_trailing_are_diffusers_grids() -> None:
    """(diffusers' DDIMScheduler, steps_offset 0; `trailing` where its arange holds S values)"""
    from diffusers import DDIMScheduler

    for spacing in ("leading", "trailing"):
        scheduler = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
        for S in (10, 50, 64):
            scheduler.set_timesteps(S)
            assert spaced_timesteps(spacing, 1000, S) == scheduler.timesteps.tolist()
    assert spaced_timesteps("leading", 500, 50) == list(range(490, -1, -10))
    assert spaced_timesteps("trailing", 500, 50) == list(range(499, 0, -10))


def test_quadratic_is_the_official_ddim_grid() -> None:
    """`(np.linspace(0, np.sqrt(T * 0.8), S) ** 2).astype(int)` where its steps are distinct;
    where they repeat, each repeat is raised to one past the step before."""
    official = (np.linspace(0, np.sqrt(1000 * 0.8), 10) ** 2).astype(int).tolist()
    assert quadratic_timesteps(1000, 10) == official == [0, 9, 39, 88, 158, 246, 355, 483,
                                                         632, 800]
    assert spaced_timesteps("quadratic", 1000, 10) == official[::-1]
    repeats = (np.linspace(0, np.sqrt(1000 * 0.8), 100) ** 2).astype(int).tolist()
    assert repeats[:4] == [0, 0, 0, 0] and repeats[-1] == 800
    steps = quadratic_timesteps(1000, 100)
    assert steps[:4] == [0, 1, 2, 3] and steps[-1] == 800
    assert all(b == max(a + 1, r) for a, b, r in zip(steps, steps[1:], repeats[1:], strict=False))


def test_an_unknown_spacing_or_too_many_steps_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown timestep spacing"):
        spaced_timesteps("cubic", 100, 10)
    with pytest.raises(ValueError, match=r"1\.\.T=100"):
        spaced_timesteps("leading", 100, 101)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_ddim_follows_the_spacing(spacing: str) -> None:
    schedule = DDPM.create("linear", 100)
    sampler = DDIMSampler(schedule, 10, spacing=spacing)
    assert sampler.timesteps() == spaced_timesteps(spacing, 100, 10)
    assert sampler.nfe == 10
