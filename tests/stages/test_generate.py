"""Generation: samples from a trained stage 2 decode to uint8 images, seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cache import ArtifactCache
from harness.config import SampleConfig, Stage1Config, Stage2Config, TrialConfig
from harness.diffusion.spacing import spaced_timesteps
from harness.models import build_stage1
from harness.stages.generate import generate, sample_and_evaluate, sampler_for
from harness.stages.stage2 import Stage2Model, load_stage2

IMAGES = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)


def tiny_models(tmp_path: Path, **sections: object
                ) -> tuple[torch.nn.Module, Stage2Model, TrialConfig]:
    """A random stage 1 and a 3-step stage 2 on random 8x8 images, and their trial config."""
    torch.manual_seed(0)
    stage1 = build_stage1(Stage1Config(kind="conv_ae", f=2, channels=4, latent_channels=2))
    config = TrialConfig(name="t", dataset="d.yaml", seed=1,
                         stage2={"channels": 8, "channel_mult": [1], "heads": 2, "T": 20,
                                 "train_steps": 3, "batch_size": 4}, **sections)
    return stage1, load_stage2(config, stage1, "stage1-key", IMAGES,
                               ArtifactCache(tmp_path)), config


def test_samples_decode_to_seeded_uint8_images(tmp_path: Path) -> None:
    stage1, model, config = tiny_models(tmp_path, sample={"ddim_steps": 5, "num_samples": 6,
                                                          "batch_size": 4})
    sampler = sampler_for(config.sample, model)
    assert len(sampler.timesteps()) == 5
    samples = generate(stage1, model, sampler, 6, 4, seed=1)
    assert samples.shape == (6, 8, 8, 3) and samples.dtype == np.uint8
    assert np.array_equal(samples, generate(stage1, model, sampler, 6, 4, seed=1))
    assert not np.array_equal(samples, generate(stage1, model, sampler, 6, 4, seed=2))
    ddpm = sampler_for(SampleConfig(sampler="ddpm"), model)
    assert len(ddpm.timesteps()) == 20


class GridOnlyRun:
    """The part of a TrackedRun that sampling without set metrics uses."""

    def __init__(self) -> None:
        self.grids: list[str] = []

    def log_grid(self, images: np.ndarray, name: str, artifact_path: str) -> None:
        self.grids.append(name)

    def set_tags(self, tags: dict[str, str]) -> None:
        raise AssertionError("no set metrics, no tags")


def test_the_trial_samples_with_the_sample_sections_sampler_and_logs_its_nfe(
        tmp_path: Path) -> None:
    stage1, model, config = tiny_models(
        tmp_path, sample={"sampler": "heun", "ddim_steps": 4, "num_samples": 3,
                          "batch_size": 2}, eval={"metrics": []})
    run = GridOnlyRun()
    metrics = sample_and_evaluate(config, stage1, model, IMAGES, None,  # type: ignore[arg-type]
                                  ArtifactCache(tmp_path), run)
    assert metrics["sample/nfe"] == 7 and metrics["sample/num_images"] == 3
    assert run.grids == ["samples.png"]
    quadratic = SampleConfig(ddim_steps=5, timestep_spacing="quadratic")
    assert sampler_for(quadratic, model).timesteps() == spaced_timesteps("quadratic", 20, 5)
    assert sampler_for(SampleConfig(ddim_steps=5), model).nfe == 5


@pytest.mark.parametrize(("sampler", "nfe", "steps"), [("ddim", 10, 10), ("heun", 10, 5),
                                                       ("pndm", 10, 9), ("euler", 50, 20)])
def test_nfe_picks_the_most_steps_within_it(sampler: str, nfe: int, steps: int) -> None:
    """`sample.nfe` instead of `ddim_steps`: Heun takes 2S - 1 evaluations, PNDM S + 1, and
    no sampler takes more steps than T (20 here)."""
    config = SampleConfig(sampler=sampler, nfe=nfe)
    model = Stage2Model(torch.nn.Identity(), Stage2Config(T=20), 1.0, (2, 4, 4))
    chosen = sampler_for(config, model)
    assert chosen.steps == steps and chosen.nfe <= nfe


def test_a_sampler_with_one_spacing_gets_it_when_none_is_given() -> None:
    assert SampleConfig(sampler="pndm").timestep_spacing == "leading"
    assert SampleConfig(sampler="ddim").timestep_spacing == "linspace"
    with pytest.raises(ValueError, match="pndm takes timestep_spacing leading"):
        SampleConfig(sampler="pndm", timestep_spacing="linspace")
    with pytest.raises(ValueError, match="ddpm takes all T steps"):
        SampleConfig(sampler="ddpm", nfe=10)
