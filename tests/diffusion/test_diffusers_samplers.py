"""The sampler zoo (harness.diffusion.zoo): diffusers schedulers on the trained model's own
schedule, against the harness's DDIM, closed forms on Gaussian data, a counting model and
the meta device."""

from __future__ import annotations

import inspect
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from pydantic import ValidationError

from harness.config import SampleConfig, Stage2Config, TrialConfig, load_experiment
from harness.diffusion import FLOW_SAMPLERS, SAMPLER_SPACINGS, SAMPLERS, SPACINGS
from harness.diffusion.processes import DDPM, RectifiedFlow, process_of
from harness.diffusion.samplers import DDIMSampler, Denoiser, make_sampler, sample
from harness.diffusion.spacing import spaced_timesteps
from harness.diffusion.zoo import SCHEDULERS, SchedulerSampler, scheduler_class
from harness.errors import ConfigError
from harness.models import build_stage2
from harness.sweep import expand
from tests.helpers import write_experiment
from tests.models.meta import META

ZOO = [name for name in SAMPLERS.names() if name in SCHEDULERS]
PREDICTIONS = ("eps", "v", "x0")
MU, S = 1.5, 0.5  # data ~ N(MU, S^2 I)


def spacings_of(name: str) -> tuple[str, ...]:
    return SAMPLER_SPACINGS.get(name, SPACINGS)


def zoo(name: str, process: DDPM, prediction: str = "eps", steps: int = 5,
        spacing: str | None = None) -> SchedulerSampler:
    sampler = make_sampler(name, process, prediction, steps,
                           spacing=spacing or spacings_of(name)[0])
    assert isinstance(sampler, SchedulerSampler)
    return sampler


def gaussian_model(process: DDPM, prediction: str) -> Denoiser:
    """The exact output for data N(MU, S^2 I) at any, also fractional, timestep: sigma =
    sqrt((1 - a) / a) interpolated linearly in t as the sigma-space schedulers do (at a whole
    step that is the table's alpha_bar), a = 1 / (1 + sigma^2), and
    E[eps | z_t] = sqrt(1 - a) (z_t - sqrt(a) MU) / (a S^2 + 1 - a)."""
    sigmas = ((1 - process.alpha_bar) / process.alpha_bar).sqrt().numpy()

    def model(z: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        sigma = float(np.interp(float(time[0]), np.arange(len(sigmas)), sigmas))
        a = 1 / (1 + sigma**2)
        eps = (1 - a) ** 0.5 * (z - a**0.5 * MU) / (a * S**2 + 1 - a)
        x0 = (z - (1 - a) ** 0.5 * eps) / a**0.5
        return {"eps": eps, "x0": x0, "v": a**0.5 * eps - (1 - a) ** 0.5 * x0}[prediction]
    return model


def diffusers_ddim(process: DDPM, timesteps: list[int], stride_steps: int, z_T: torch.Tensor,
                   model: Denoiser, eta: float, generator: torch.Generator) -> torch.Tensor:
    """diffusers' own DDIM loop. DDIMScheduler steps from t to t - T // num_inference_steps,
    not to the next of its timesteps, so it runs our grid where that grid is evenly spaced:
    the timesteps are set explicitly and num_inference_steps only sets the stride; with
    set_alpha_to_one the last step ends at alpha_bar = 1 like ours (t_prev = -1), and
    clip_sample (on by default) is off since the harness does not clip x0."""
    scheduler = DDIMScheduler(num_train_timesteps=process.T, trained_betas=process.betas.numpy(),
                              clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    scheduler.set_timesteps(stride_steps)
    assert all(t - t_prev == process.T // stride_steps
               for t, t_prev in pairwise(timesteps))
    scheduler.timesteps = torch.tensor(timesteps)
    z = z_T
    for t in timesteps:
        output = model(z, torch.full((len(z),), t))
        z = scheduler.step(output, t, z, eta=eta, generator=generator).prev_sample
    return z


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize(("T", "steps", "spacing", "stride_steps"), [
    (1000, 10, "linspace", 9), (1000, 28, "linspace", 27), (1000, 112, "linspace", 111),
    (1000, 50, "leading", 50), (500, 20, "leading", 20)])
def test_the_harness_ddim_is_diffusers_ddim(T: int, steps: int, spacing: str,
                                            stride_steps: int, eta: float) -> None:
    """Same betas, same timesteps, same eps function (Gaussian data's exact one), and for
    eta > 0 the same noise: both draw it from the CPU generator after z_T, one draw per step
    (diffusers draws once more at the last step, where sigma is 0)."""
    process = DDPM.create("scaled_linear", T)
    sampler = DDIMSampler(process, steps, eta, spacing=spacing)
    model = gaussian_model(process, "eps")
    ours = sample(model, sampler, (64, 3), torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    z_T = torch.randn(64, 3, generator=generator)
    theirs = diffusers_ddim(process, sampler.timesteps(), stride_steps, z_T, model, eta,
                            generator)
    assert (ours - theirs).abs().max().item() < 1e-5


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_sampler_samples_a_tiny_fftd_on_cpu_and_on_meta(name: str,
                                                                  prediction: str) -> None:
    """Any trained stage 2 (eps, v or x0) with any zoo sampler: finite samples of the right
    shape, and on meta every tensor follows the device (one made on the CPU would raise)."""
    config = Stage2Config(channels=8, channel_mult=[1, 2], heads=2, attention_resolution=4,
                          T=20, prediction=prediction)
    torch.manual_seed(0)
    model = build_stage2(config, 3, 4).eval()
    sampler = zoo(name, process_of(config), prediction)
    z = sample(model, sampler, (2, 3, 4, 4), torch.Generator().manual_seed(0))
    assert z.shape == (2, 3, 4, 4) and z.dtype == torch.float32 and z.isfinite().all()
    on_meta = sample(model.to(META), sampler, (2, 3, 4, 4), torch.Generator().manual_seed(0),
                     device=META)
    assert on_meta.device == META and on_meta.shape == (2, 3, 4, 4)


class CountingModel:
    """Counts its calls and keeps the times it is fed."""

    def __init__(self) -> None:
        self.times: list[torch.Tensor] = []

    def __call__(self, z: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        self.times.append(time)
        return 0.1 * z


@pytest.mark.parametrize("steps", [5, 10])
@pytest.mark.parametrize("name", SAMPLERS.names())
def test_nfe_is_the_number_of_model_calls(name: str, steps: int) -> None:
    process = DDPM.create("linear", 20)
    sampler = make_sampler(name, process, "eps", steps, spacing=spacings_of(name)[0])
    model = CountingModel()
    sample(model, sampler, (2, 3), torch.Generator().manual_seed(0))
    expected = {"ddpm": process.T, "heun": 2 * steps - 1, "pndm": steps + 1}.get(name, steps)
    assert len(model.times) == sampler.nfe == expected


def test_euler_type_samplers_feed_the_model_fractional_times_as_float() -> None:
    """linspace(0, 19, 5) = 19, 14.25, 9.5, 4.75, 0 (FFTD embeds t.float())."""
    for name in ("euler", "euler_ancestral", "heun"):
        model = CountingModel()
        sample(model, zoo(name, DDPM.create("linear", 20)), (2, 3),
               torch.Generator().manual_seed(0))
        assert all(time.dtype == torch.float32 for time in model.times)
        assert [float(time[0]) for time in model.times][:2] == [19.0, 14.25]


@pytest.mark.parametrize("name", ZOO)
def test_each_zoo_spacing_gives_s_distinct_timesteps(name: str) -> None:
    """Each scheduler's own grid for linspace, leading and trailing, ours for quadratic; the
    inner times of Heun and PLMS repeat a step."""
    process = DDPM.create("linear", 500)
    for spacing in spacings_of(name):
        timesteps = zoo(name, process, steps=10, spacing=spacing).timesteps()
        distinct = sorted(set(timesteps), reverse=True)
        assert len(distinct) == 10 and distinct[-1] >= 0 and distinct[0] <= 499
        assert sorted(timesteps, reverse=True) == timesteps
        if spacing == "quadratic":
            assert distinct == spaced_timesteps("quadratic", 500, 10)


def test_the_schema_knows_which_spacings_and_processes_each_sampler_takes() -> None:
    """SAMPLER_SPACINGS and FLOW_SAMPLERS (what the schema checks without diffusers) are
    what the builders accept; quadratic needs a set_timesteps that takes timesteps."""
    assert SampleConfig.model_fields["timestep_spacing"].annotation.__args__ == SPACINGS
    process = DDPM.create("linear", 100)
    for name in SAMPLERS.names():
        for spacing in SPACINGS:
            allowed = spacing in spacings_of(name)
            try:
                make_sampler(name, process, "eps", 10, spacing=spacing)
            except ValueError as error:
                assert not allowed, error
                assert "sample.timestep_spacing" in str(error)
            else:
                assert allowed, (name, spacing)
        try:
            make_sampler(name, RectifiedFlow(100), "v", 10)
        except ValueError:
            assert name not in FLOW_SAMPLERS
        else:
            assert name in FLOW_SAMPLERS
    for name in ZOO:
        takes = "timesteps" in inspect.signature(scheduler_class(name).set_timesteps).parameters
        assert ("quadratic" in spacings_of(name)) == (takes and name != "pndm")


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "cosine"])
def test_each_scheduler_has_the_models_betas_and_prediction(schedule: str) -> None:
    process = DDPM.create(schedule, 200)
    for name in ZOO:
        for prediction in PREDICTIONS:
            scheduler = zoo(name, process, prediction).scheduler()
            assert scheduler.config.num_train_timesteps == 200
            torch.testing.assert_close(scheduler.alphas_cumprod.double(), process.alpha_bar,
                                       rtol=1e-5, atol=1e-7)
            native = prediction in SCHEDULERS[name].predictions
            expected = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}[
                prediction if native else "eps"]
            assert scheduler.config.prediction_type == expected


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("name", ZOO)
def test_zoo_samplers_recover_gaussian_data_at_50_steps(name: str, prediction: str) -> None:
    """With the exact model the samples land near N(MU, S^2): a loose check (the samplers'
    own error at 50 steps is up to 12% of S, Euler ancestral's) that a wrong
    prediction_type, betas or scale of z_T fails."""
    process = DDPM.create("linear", 500)
    sampler = zoo(name, process, prediction, steps=50)
    a_T = process.alpha_bar[-1].item()  # z_T from the true marginal at T-1
    z_T = a_T**0.5 * MU + (a_T * S**2 + 1 - a_T) ** 0.5 * torch.randn(
        20000, 4, generator=torch.Generator().manual_seed(1))
    z = sample(gaussian_model(process, prediction), sampler, (20000, 4),
               torch.Generator().manual_seed(0), z_T=z_T)
    assert z.mean().item() == pytest.approx(MU, abs=0.02)
    assert z.std().item() == pytest.approx(S, abs=0.07)


@pytest.mark.parametrize("name", [name for name in ZOO if name != "euler"])
def test_a_multistep_history_is_fresh_in_every_chain(name: str) -> None:
    """Two chains from the same z_T are the same chain: no state of the first leaks."""
    process = DDPM.create("cosine", 50)
    sampler = zoo(name, process, steps=8)
    model = gaussian_model(process, "eps")
    z_T = torch.randn(16, 3, generator=torch.Generator().manual_seed(2))
    first = sample(model, sampler, (16, 3), torch.Generator().manual_seed(0), z_T=z_T)
    second = sample(model, sampler, (16, 3), torch.Generator().manual_seed(0), z_T=z_T)
    assert torch.equal(first, second)


def test_ancestral_noise_comes_from_the_cpu_generator_on_every_device() -> None:
    """Euler ancestral draws one noise per step through diffusers' randn_tensor, on the CPU
    generator (the global one when none is given) whatever the sample's device: on meta the
    generator moves exactly as on the CPU, and a global seed repeats a chain."""
    process = DDPM.create("cosine", 20)
    sampler = zoo("euler_ancestral", process)
    model = gaussian_model(process, "eps")
    states = []
    for device in ("cpu", META):
        generator = torch.Generator().manual_seed(0)
        sample(model if device == "cpu" else (lambda z, t: z), sampler, (4, 3), generator,
               device=device)
        states.append(generator.get_state())
    untouched = torch.Generator().manual_seed(0)
    torch.randn(4, 3, generator=untouched)  # z_T alone
    assert torch.equal(states[0], states[1])
    assert not torch.equal(states[0], untouched.get_state())
    global_states = []
    for device in ("cpu", META):
        torch.manual_seed(5)
        sample(model if device == "cpu" else (lambda z, t: z), sampler, (4, 3), device=device)
        global_states.append(torch.get_rng_state())
    assert torch.equal(*global_states)
    torch.manual_seed(5)
    one = sample(model, sampler, (4, 3))
    torch.manual_seed(5)
    assert torch.equal(one, sample(model, sampler, (4, 3)))


def test_a_zoo_sampler_on_rectified_flow_is_an_error_naming_sample_sampler(
        tmp_path: Path) -> None:
    flow = {"process": "rectified_flow", "prediction": "v"}
    with pytest.raises(ValidationError, match=r"sample\.sampler heun"):
        TrialConfig(name="t", dataset="d.yaml", stage2=flow, sample={"sampler": "heun"})
    path = write_experiment(tmp_path, stage2={"channels": 8, "heads": 2, **flow},
                            sample={"sampler": "dpmsolver++", "ddim_steps": 3, "num_samples": 8})
    with pytest.raises(ConfigError) as caught:
        expand(load_experiment(path))
    assert caught.value.key == "sample" and "sample.sampler dpmsolver++" in caught.value.message
    with pytest.raises(ValueError, match=r"sample\.sampler unipc"):
        make_sampler("unipc", RectifiedFlow(100), "v", 10)


def test_a_spacing_a_sampler_cannot_take_is_an_error_naming_timestep_spacing(
        tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="timestep_spacing") as caught:
        SampleConfig(sampler="pndm", timestep_spacing="linspace")
    assert "pndm takes timestep_spacing leading" in str(caught.value)
    assert SampleConfig(sampler="pndm").timestep_spacing == "leading"  # unset: its only one
    path = write_experiment(tmp_path, sample={"sampler": "unipc", "ddim_steps": 3,
                                              "num_samples": 8, "timestep_spacing": "quadratic"})
    with pytest.raises(ConfigError) as error:
        expand(load_experiment(path))
    assert error.value.key == "sample.timestep_spacing"
    flow = write_experiment(tmp_path, "flow.yaml", stage2={"process": "rectified_flow",
                                                           "prediction": "v"},
                            sample={"ddim_steps": 3, "num_samples": 8,
                                    "timestep_spacing": "leading"})
    with pytest.raises(ConfigError, match=r"sample\.timestep_spacing linspace"):
        expand(load_experiment(flow))
