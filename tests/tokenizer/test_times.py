"""harness.tokenizer.times: GDDCMConfig (harness.config) checked against a model's process, and
the default times filled in."""

from __future__ import annotations

import numpy as np
import pytest

from harness.config import DEFAULT_NOISE_S, GDDCMConfig
from harness.diffusion.processes import noise_level
from harness.errors import ConfigError
from harness.tokenizer.times import check_section, for_process, resolve_times
from tests.tokenizer.gaussian import Variant, ddpm, flow


@pytest.mark.parametrize(("values", "key"), [
    ({"p": 1.0}, "gddcm.p"), ({"p": -0.1}, "gddcm.p"), ({"K": 0}, "gddcm.K"),
    ({"N": -3}, "gddcm.N"), ({"grid": 0}, "gddcm.grid"), ({"init": 5}, "gddcm.init"),
    ({"K": "many"}, "gddcm.K"), ({"colour": 1}, "gddcm.colour"),
    ({"noise_s": 0}, "gddcm.noise_s"), ({"t_s": 10, "noise_s": 0.3}, "gddcm")])
def test_invalid_settings_name_their_key(values: dict, key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        GDDCMConfig.load(values, "exp.yaml")
    assert raised.value.key == key and "exp.yaml" in str(raised.value)


@pytest.mark.parametrize(("values", "variant", "key"), [
    ({"t_s": 100}, ddpm(T=100), "gddcm.t_s"), ({"t_r": 1.5}, flow(), "gddcm.t_r"),
    ({"t_s": 2.5}, ddpm(T=100), "gddcm.t_s"), ({"t_end": -2}, ddpm(T=100), "gddcm.t_end"),
    ({"dt_max": 1.5}, flow(), "gddcm.dt_max"), ({"noise_s": 1e4}, ddpm(T=100), "gddcm.noise_s")])
def test_times_outside_the_process_range_name_their_key(values: dict, variant: Variant,
                                                        key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        for_process(GDDCMConfig(**values), variant.process, "exp.yaml")
    assert raised.value.key == key and "exp.yaml" in str(raised.value)
    GDDCMConfig.load(values)  # it is the process that refuses them


def test_a_trials_section_is_checked_against_the_data_the_model_diffuses() -> None:
    process = ddpm(T=50).process
    check_section(GDDCMConfig(grid=4, t_s=20), process, resolution=32, f=4)  # 8x8 latents
    with pytest.raises(ConfigError, match=r"gddcm\.grid: 3 does not divide the 8x8 data") as raised:
        check_section(GDDCMConfig(grid=3), process, resolution=32, f=4, file="exp.yaml")
    assert raised.value.key == "gddcm.grid" and "exp.yaml" in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        check_section(GDDCMConfig(t_r=80), process, resolution=32, f=4)
    assert raised.value.key == "gddcm.t_r"


@pytest.mark.parametrize("variant", [ddpm(T=100), ddpm(T=1000), flow()], ids=str)
def test_default_ts_is_one_noise_level_in_every_variant(variant: Variant) -> None:
    process = variant.process
    t_s = resolve_times(GDDCMConfig(), process).t_s
    if process.discrete:  # the nearest timestep: its neighbours are further off (log scale)
        def off(t: float) -> float:
            return abs(np.log(noise_level(process, t) / DEFAULT_NOISE_S))
        assert off(t_s) <= min(off(t_s - 1), off(t_s + 1))
    else:
        assert noise_level(process, t_s) == pytest.approx(DEFAULT_NOISE_S, rel=1e-9)
    assert resolve_times(GDDCMConfig(noise_s=1.0), process).t_s > t_s
    middle = process.t_max // 2 if process.discrete else process.t_max / 2
    assert resolve_times(GDDCMConfig(t_s=middle), process).t_s == middle  # t_s wins


def test_default_steps_and_ends_follow_the_process() -> None:
    discrete = resolve_times(GDDCMConfig(t_s=30, P=5), ddpm(T=100).process)
    assert (discrete.dt_min, discrete.dt_max) == (1.0, 6.0)  # Eq. 12: dt_max = dt_min + P
    assert (discrete.t_r, discrete.t_end) == (99, -1)
    continuous = resolve_times(GDDCMConfig(t_s=0.4), flow().process)
    assert continuous.dt_min == pytest.approx(0.004) and continuous.dt_max == 0.4
    assert (continuous.t_r, continuous.t_end) == (1.0, 0.0)
    given = resolve_times(GDDCMConfig(t_s=0.4, dt_min=0.01, dt_max=0.2, t_r=0.9, t_end=0.1),
                          flow().process)
    assert (given.dt_min, given.dt_max, given.t_r, given.t_end) == (0.01, 0.2, 0.9, 0.1)
