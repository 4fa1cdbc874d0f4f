"""harness.tokenizer.timesteps: Eq. 9's step sizes, Eq. 10's repeats (Eqs. 12-13 in discrete
time), Algorithm 1's descent and the final ODE steps."""

from __future__ import annotations

import itertools

import pytest

from harness.tokenizer.timesteps import (
    descent_times,
    discrete_positions,
    fixed_point_schedule,
    ode_times,
    repeats,
    step_size,
)


def test_eq9_steps_are_geometric_from_dt_max_to_dt_min() -> None:
    P, dt_min, dt_max = 4, 0.01, 0.5
    sizes = [step_size(k, P, dt_min, dt_max) for k in range(P + 1)]
    assert sizes[0] == pytest.approx(dt_max) and sizes[-1] == pytest.approx(dt_min)
    ratios = [b / a for a, b in itertools.pairwise(sizes)]
    assert ratios == pytest.approx([(dt_min / dt_max) ** (1 / P)] * P)


def test_eq12_positions_put_the_whole_steps_on_the_eq9_curve() -> None:
    P, dt_min = 5, 2
    positions = discrete_positions(P, dt_min)
    assert positions[0] == pytest.approx(P)
    for k, m in enumerate(positions):
        assert step_size(m, P, dt_min, dt_min + P) == pytest.approx(dt_min + k)


def test_eq10_repeats_share_n_by_the_edm_like_weights() -> None:
    P, N, sigma_max, rho = 8, 100, 80.0, 7.0
    counts = repeats(list(range(P)), P, N, sigma_max, rho)
    weights = [(1 + k / P * (sigma_max ** (1 / rho) - 1)) ** rho for k in range(P)]
    shares = [w / sum(weights) * N for w in weights]
    assert all(abs(count - share) <= 0.5 for count, share in zip(counts, shares, strict=True))
    assert counts[0] < counts[-1]  # w(0) = 1 rises to w(P) = sigma_max


@pytest.mark.parametrize("discrete", [True, False])
def test_the_fixed_point_schedule_runs_coarse_to_fine(discrete: bool) -> None:
    schedule = fixed_point_schedule(4, 40, 1.0 if discrete else 0.003, 5.0 if discrete else 0.3,
                                    80.0, 7.0, discrete)
    steps = [dt for dt, _ in schedule]
    assert steps == sorted(steps, reverse=True) and len(steps) == 4
    if discrete:
        assert steps == [4.0, 3.0, 2.0, 1.0]  # dt_min + k whole steps, dt_max = dt_min + P
    else:
        assert steps[0] == pytest.approx(0.3)
    assert all(count >= 0 for _, count in schedule)
    assert abs(sum(count for _, count in schedule) - 40) <= 2


def test_algorithm_1_descends_in_equal_steps() -> None:
    assert descent_times(1.0, 0.0, 4, discrete=False) == [1.0, 0.75, 0.5, 0.25, 0.0]
    times = descent_times(49, -1, 10, discrete=True)
    assert times[0] == 49 and times[-1] == -1 and len(times) == 11
    assert all(t == int(t) for t in times) and times == sorted(set(times), reverse=True)
    with pytest.raises(ValueError, match="whole timesteps"):
        descent_times(49, -1, 60, discrete=True)


def test_the_ode_steps_end_at_the_clean_end() -> None:
    assert ode_times(0.3, 0.0, 3, discrete=False) == pytest.approx([0.3, 0.2, 0.1, 0.0])
    assert ode_times(10, -1, 3, discrete=True) == [10.0, 6.0, 3.0, -1.0]
    assert ode_times(2, -1, 20, discrete=True) == [2.0, 1.0, 0.0, -1.0]  # never a step twice
