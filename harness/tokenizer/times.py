"""The tokenizer's times for one model: GDDCMConfig checked against the model's process and
its defaults filled in (T_s from a noise level, Eq. 9's step sizes, Eq. 12 in discrete time).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.config import DEFAULT_NOISE_S, GDDCMConfig
from harness.diffusion.processes import Process, noise_level, time_at_noise_level
from harness.errors import ConfigError


@dataclass(frozen=True)
class Times:
    """The config's times with their defaults filled in for one model."""

    t_s: float
    t_r: float
    t_end: float
    dt_min: float
    dt_max: float


def for_process(config: GDDCMConfig, process: Process, file: str | Path | None = None,
                prefix: str = "gddcm") -> GDDCMConfig:
    """`config` checked against the process's time range (errors name the key)."""
    context = {"t_min": process.t_min, "t_max": process.t_max, "discrete": process.discrete,
               "noise_max": noise_level(process, process.t_max)}
    return GDDCMConfig.load(config.model_dump(), file, context, prefix)


def check_section(config: GDDCMConfig, process: Process, resolution: int, f: int,
                  file: str | Path | None = None) -> None:
    """A trial's `gddcm` section before anything runs: times in the process's range and a
    grid that divides the (resolution / f)-sided data the model diffuses. A valid setting
    the algorithm cannot run (e.g. more Algorithm 1 steps than timesteps) is left to the
    trial, which then ends FAILED with the reason, like a cross in the seed's tables."""
    checked = for_process(config, process, file)
    side = resolution // f
    if side % checked.grid:
        raise ConfigError(file, "gddcm.grid", f"{checked.grid} does not divide the "
                          f"{side}x{side} data the model diffuses ({resolution}px images, "
                          f"f={f})")


def resolve_times(config: GDDCMConfig, process: Process) -> Times:
    lo, hi = process.t_min, process.t_max
    t_s = config.t_s if config.t_s is not None else time_at_noise_level(
        process, config.noise_s or DEFAULT_NOISE_S)
    if process.discrete:
        t_s = float(max(round(t_s), 1))
    dt_min = config.dt_min if config.dt_min is not None else (
        1.0 if process.discrete else (t_s - lo) / 100)
    dt_max = config.dt_max if config.dt_max is not None else (
        dt_min + config.P if process.discrete else t_s - lo)
    return Times(t_s=t_s, t_r=config.t_r if config.t_r is not None else hi,
                 t_end=config.t_end if config.t_end is not None else lo,
                 dt_min=dt_min, dt_max=dt_max)
