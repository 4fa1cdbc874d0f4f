"""GDDCMConfig: the tokenizer's settings (seed 002 Sec. 3-4), validated strictly.

Times are in the model's own units (a step index 0..T-1 for DDPM, t in [0, 1] for
rectified flow). What can be checked without the model is checked on construction; the
times are checked against the model's range by `GDDCMConfig.for_model` (or by validating
with context {"t_min": ..., "t_max": ..., "discrete": ...}), each error naming its key.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from harness.config import Section, TrialConfig, validation_error
from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.gddcm.marginal import Marginal

TIME_KEYS = ("t_s", "t_r", "t_end", "dt_min", "dt_max")
# Default T_s as a noise level sigma_t / alpha_t of Eq. 8, so that it means the same in every
# variant. In experiments/gddcm_Ts.yaml it is the best level on the latent rectified flow and
# the second best on the latent DDPM (LPIPS 0.0363; 0.0357 at 0.5).
DEFAULT_NOISE_S = 1 / 3


class GDDCMConfig(Section):
    p: float = Field(0.0, ge=0, lt=1, description="back-trace parameter; 0: fixed point "
                     "(Algorithm 2), 0.5 in discrete time: DDCM")
    K: int = Field(1024, gt=0, description="codebook size per step (tokens of log2 K bits)")
    N: int = Field(300, gt=0, description="number of tokenization steps")
    P: int = Field(50, gt=0, description="step-size intervals of Algorithm 2 (Eq. 9)")
    grid: int = Field(1, ge=1, description="g: one token per cell of a g x g grid per step")
    init: int = Field(1, ge=1, le=4, description="1 codebook projection (Eq. 15), 2 noise, "
                      "3 forward marginal of a reference sample, 4 zeros")
    seed: int = Field(0, ge=0, description="seed of the codebooks and of the init noise")
    t_s: float | None = Field(None, description="Algorithm 2's tokenization time T_s in "
                              "the model's time units (default: from noise_s)")
    noise_s: float | None = Field(None, gt=0, description="T_s as a noise level: the time "
                                  "at which sigma_t / alpha_t of Eq. 8 equals this, the "
                                  f"same in every variant (default {DEFAULT_NOISE_S:.3g} "
                                  "when t_s is unset)")
    t_r: float | None = Field(None, description="Algorithm 1's start T_r (default: T)")
    t_end: float | None = Field(None, description="Algorithm 1's end before plain sampling "
                                "(default: the clean end)")
    dt_min: float | None = Field(None, gt=0, description="smallest step of Eq. 9 (default "
                                 "T_s / 100; discrete time: 1)")
    dt_max: float | None = Field(None, gt=0, description="largest step of Eq. 9 (default T_s; "
                                 "discrete time: dt_min + P, Eq. 12)")
    sigma_max: float = Field(80.0, gt=0, description="sigma_max of Eq. 10")
    rho: float = Field(7.0, gt=0, description="rho of Eq. 10")
    final_steps: int = Field(20, ge=1, description="ODE steps (Eq. 18) from the last "
                             "tokenization time to the data")
    batch_size: int = Field(128, ge=1, description="images per batch, which share each "
                            "step's codebook; part of the token file")

    @field_validator(*TIME_KEYS)
    @classmethod
    def _in_model_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        context = info.context or {}
        if value is None or "t_max" not in context:
            return value
        lo, hi = context["t_min"], context["t_max"]
        if info.field_name in ("dt_min", "dt_max"):
            if value > hi - lo:
                raise ValueError(f"step {value:g} exceeds the model's time range {hi - lo:g}")
        elif not lo <= value <= hi:
            raise ValueError(f"must lie in the model's time range [{lo:g}, {hi:g}], "
                             f"got {value:g}")
        if context.get("discrete") and value != int(value):
            raise ValueError(f"the model has discrete timesteps; got {value:g}")
        return value

    @field_validator("noise_s")
    @classmethod
    def _noise_in_model_range(cls, value: float | None, info: ValidationInfo
                              ) -> float | None:
        highest = (info.context or {}).get("noise_max")
        if value is not None and highest is not None and value > highest:
            raise ValueError(f"must not exceed the model's largest noise level sigma/alpha "
                             f"{highest:.4g}, got {value:g}")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> GDDCMConfig:
        if self.t_s is not None and self.noise_s is not None:
            raise ValueError("give T_s as t_s or as noise_s, not both")
        if self.dt_min is not None and self.dt_max is not None and self.dt_min > self.dt_max:
            raise ValueError("dt_min must not exceed dt_max")
        if self.t_r is not None and self.t_end is not None and self.t_end >= self.t_r:
            raise ValueError("t_end must be below t_r")
        if self.K > 2**31 - 1:
            raise ValueError("K must fit in int32")
        return self

    @classmethod
    def load(cls, data: dict[str, Any], file: str | Path | None = None,
             context: dict[str, Any] | None = None, prefix: str = "gddcm") -> GDDCMConfig:
        """Validate `data`, raising ConfigError that names file and `prefix.key`."""
        try:
            return cls.model_validate(data, context=context)
        except ValidationError as error:
            raised = validation_error(Path(file) if file else Path("<command line>"), error)
            raise ConfigError(file, f"{prefix}.{raised.key}" if raised.key else prefix,
                              raised.message) from None

    def for_model(self, marginal: Marginal, file: str | Path | None = None,
                  prefix: str = "gddcm") -> GDDCMConfig:
        """This config checked against the model's time range (errors name the key)."""
        context = {"t_min": marginal.t_min, "t_max": marginal.t_max,
                   "discrete": marginal.discrete, "noise_max": noise_level(marginal,
                                                                           marginal.t_max)}
        return self.load(self.model_dump(), file, context, prefix)

    def digest(self) -> str:
        """Hash of the settings that decide the tokens (stored in the token file)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


TrialConfig.model_rebuild(_types_namespace={"GDDCMConfig": GDDCMConfig})


def check_trial(config: TrialConfig, resolution: int, file: str | Path | None = None) -> None:
    """A trial's `gddcm` section against the model it will tokenize with, before anything
    runs: times in the range of stage2's process (T) and a grid that divides the
    (resolution / f)-sided data. A valid setting the algorithm cannot run (e.g. more
    Algorithm 1 steps than timesteps) is left to the trial, which then ends FAILED with the
    reason, like a cross in the seed's tables."""
    from harness.gddcm.model import marginal_for

    if config.gddcm is None:
        return
    cfg = config.gddcm.for_model(marginal_for(config.stage2), file)
    side = resolution // config.stage1.f
    if side % cfg.grid:
        raise ConfigError(file, "gddcm.grid", f"{cfg.grid} does not divide the {side}x{side} "
                          f"data the model diffuses ({resolution}px images, f={config.stage1.f})")


@dataclass(frozen=True)
class Times:
    """The config's times with their defaults filled in for one model."""

    t_s: float
    t_r: float
    t_end: float
    dt_min: float
    dt_max: float


def noise_level(marginal: Marginal, t: float) -> float:
    """sigma_t / alpha_t of Eq. 8 (EDM's sigma); infinite where alpha_t = 0."""
    alpha = marginal.alpha(t)
    return marginal.sigma(t) / alpha if alpha > 0 else float("inf")


def time_at_noise_level(marginal: Marginal, level: float) -> float:
    """The time whose noise level sigma_t / alpha_t is `level` (it rises with t): the nearest
    timestep (log scale) for a discrete model, else found by bisection."""
    lo, hi = marginal.t_min, marginal.t_max
    if marginal.discrete:
        steps = range(max(int(lo) + 1, 1), int(hi) + 1)
        return float(min(steps, key=lambda t: abs(math.log(noise_level(marginal, t) / level))))
    for _ in range(60):
        middle = (lo + hi) / 2
        lo, hi = (middle, hi) if noise_level(marginal, middle) < level else (lo, middle)
    return round((lo + hi) / 2, 12)


def resolve_times(config: GDDCMConfig, marginal: Marginal) -> Times:
    lo, hi = marginal.t_min, marginal.t_max
    t_s = config.t_s if config.t_s is not None else time_at_noise_level(
        marginal, config.noise_s or DEFAULT_NOISE_S)
    if marginal.discrete:
        t_s = float(max(round(t_s), 1))
    dt_min = config.dt_min if config.dt_min is not None else (
        1.0 if marginal.discrete else (t_s - lo) / 100)
    dt_max = config.dt_max if config.dt_max is not None else (
        dt_min + config.P if marginal.discrete else t_s - lo)
    return Times(t_s=t_s, t_r=config.t_r if config.t_r is not None else hi,
                 t_end=config.t_end if config.t_end is not None else lo,
                 dt_min=dt_min, dt_max=dt_max)
