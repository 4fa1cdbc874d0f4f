"""Where the tokenizer steps in time: Algorithm 1's descent from T_r and Algorithm 2's
fixed-point step sizes (Eq. 9) and repeats (Eq. 10; Eqs. 12-13 in discrete time)."""

from __future__ import annotations

import math


def step_size(k: int, P: int, dt_min: float, dt_max: float) -> float:
    """Eq. 9: dt(k) = dt_min^(k/P) dt_max^((P-k)/P); k = 0 is the coarsest."""
    return dt_min ** (k / P) * dt_max ** ((P - k) / P)


def discrete_positions(P: int, dt_min: int) -> list[float]:
    """Eq. 12 solved for m_k: dt_min + k = dt_min^(m_k/P) dt_max^((P-m_k)/P) with
    dt_max = dt_min + P."""
    dt_max = dt_min + P
    span = math.log(dt_max) - math.log(dt_min)
    return [P * (math.log(dt_max) - math.log(dt_min + k)) / span for k in range(P)]


def repeats(positions: list[float], P: int, N: int, sigma_max: float, rho: float) -> list[int]:
    """Eq. 10 (positions k) / Eq. 13 (positions m_k): round(w(k) / sum_i w(i) * N) with
    w(k) = (1 + k/P (sigma_max^(1/rho) - 1))^rho, an EDM-like allotment of the N tokens."""
    weights = [(1 + k / P * (sigma_max ** (1 / rho) - 1)) ** rho for k in positions]
    total = sum(weights)
    return [math.floor(w / total * N + 0.5) for w in weights]


def fixed_point_schedule(P: int, N: int, dt_min: float, dt_max: float, sigma_max: float,
                         rho: float, discrete: bool) -> list[tuple[float, int]]:
    """(dt, repeats) per interval of Algorithm 2, coarse to fine.

    Continuous time: Eqs. 9 and 10 for k = 0..P-1. Discrete time: dt = dt_min + k integer
    steps with repeats by Eq. 13 (dt_max is then dt_min + P, Eq. 12), largest dt first.
    """
    if discrete:
        dt_int = max(1, round(dt_min))
        counts = repeats(discrete_positions(P, dt_int), P, N, sigma_max, rho)
        return [(float(dt_int + k), counts[k]) for k in reversed(range(P))]
    counts = repeats(list(range(P)), P, N, sigma_max, rho)
    return [(step_size(k, P, dt_min, dt_max), counts[k]) for k in range(P)]


def descent_times(t_r: float, t_end: float, N: int, discrete: bool) -> list[float]:
    """Algorithm 1's times t_0 = T_r > ... > t_N = t_end, equal steps w(k) = (T_r - t_end)/N
    (whole steps in discrete time, where N may not exceed T_r - t_end)."""
    times = [t_r - (t_r - t_end) * k / N for k in range(N + 1)]
    if discrete:
        times = [float(round(t)) for t in times]
        if len(set(times)) != len(times):
            raise ValueError(f"N = {N} steps do not fit between T_r = {t_r:g} and "
                             f"t_end = {t_end:g} in whole timesteps")
    return times


def ode_times(t: float, t_min: float, steps: int, discrete: bool) -> list[float]:
    """`steps` equal Eq. 18 steps from t to the clean end (whole steps in discrete time)."""
    times = [t - (t - t_min) * k / steps for k in range(steps + 1)]
    if discrete:
        times = sorted({float(round(v)) for v in times}, reverse=True)
    return times
