"""Checkpoints: a run killed after a checkpoint and started again ends with the same weights,
bit for bit, as one uninterrupted run (on the CPU), for both training stages."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cache import ArtifactCache
from harness.config import Stage1Config, Stage2Config, TrialConfig
from harness.models import build_stage1
from harness.runtime import Runtime
from harness.stages.checkpoints import CHECKPOINT, Checkpoints
from harness.stages.stage1 import train_stage1
from harness.stages.stage2 import load_stage2, train_stage2

REPO = Path(__file__).resolve().parents[2]
# A VQ model (codebook EMA buffers, dead-code restarts from the global RNG) with the GAN
# from step 2, so every piece of state a step touches is in play; a log window (2 steps)
# that a checkpoint (every 3) cuts in half.
STAGE1 = Stage1Config(kind="ivq_vae", f=2, channels=8, latent_channels=2, K=16,
                      train_steps=6, batch_size=4, perceptual_weight=0.0, adversarial_start=2,
                      log_every=2, checkpoint_every=3)
STAGE2 = Stage2Config(channels=8, channel_mult=[1], heads=2, T=20, train_steps=6,
                      batch_size=4, dropout=0.1, log_every=2, checkpoint_every=3)


class Killed(Exception):
    """Stands for the process dying between two steps."""


def kill_at(step: int) -> Callable[[dict[str, float], int], None]:
    def log_metrics(metrics: dict[str, float], at: int) -> None:
        if at >= step:
            raise Killed(at)
    return log_metrics


def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (32, 8, 8, 3), dtype=np.uint8)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    first, second = a.state_dict(), b.state_dict()
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_stage1_resumed_after_a_kill_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    whole = train_stage1(STAGE1, images())
    checkpoints = Checkpoints(tmp_path, STAGE1.checkpoint_every)
    with pytest.raises(Killed):
        train_stage1(STAGE1, images(), log_metrics=kill_at(4), checkpoints=checkpoints)
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 3
    torch.manual_seed(123)  # whatever the global RNG did in between
    resumed = train_stage1(STAGE1, images(), checkpoints=checkpoints)
    assert_same_weights(resumed.model, whole.model)
    assert resumed.history == whole.history and resumed.final_logs == whole.final_logs


def test_a_checkpoint_of_another_run_would_change_the_weights(tmp_path: Path) -> None:
    """The test above can fail: resuming from a checkpoint whose state differs (here the
    optimizer's moments are reset) gives other weights."""
    whole = train_stage1(STAGE1, images())
    checkpoints = Checkpoints(tmp_path, STAGE1.checkpoint_every)
    with pytest.raises(Killed):
        train_stage1(STAGE1, images(), log_metrics=kill_at(4), checkpoints=checkpoints)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    state["optimizer"]["state"] = {}
    torch.save(state, tmp_path / CHECKPOINT)
    resumed = train_stage1(STAGE1, images(), checkpoints=checkpoints)
    assert not all(torch.equal(a, b) for a, b in zip(
        resumed.model.state_dict().values(), whole.model.state_dict().values(), strict=True))


def test_stage2_resumed_after_a_kill_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    latents = torch.randn(16, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    whole = train_stage2(STAGE2, latents, seed=1)
    checkpoints = Checkpoints(tmp_path, STAGE2.checkpoint_every)
    with pytest.raises(Killed):
        train_stage2(STAGE2, latents, 1, Runtime(), kill_at(4), checkpoints=checkpoints)
    torch.manual_seed(123)
    resumed = train_stage2(STAGE2, latents, 1, checkpoints=checkpoints)
    assert_same_weights(resumed.ema, whole.ema)
    assert resumed.history == whole.history


KILLED_BUILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import torch
    from harness.cache import ArtifactCache
    from harness.stages.stage2 import load_stage2
    from tests.stages.test_checkpoints import stage1_and_trial

    torch.set_num_threads(1)  # as the test process: a reduction's result depends on it
    stage1, config, images = stage1_and_trial()

    def log_metrics(metrics, step):
        if step >= 4:  # after the checkpoint at step 3
            os.kill(os.getpid(), signal.SIGKILL)

    load_stage2(config, stage1, "stage1-key", images, ArtifactCache(Path(sys.argv[1])),
                log_metrics)
""")


def stage1_and_trial() -> tuple[torch.nn.Module, TrialConfig, np.ndarray]:
    torch.manual_seed(0)
    stage1 = build_stage1(Stage1Config(kind="conv_ae", f=2, channels=4, latent_channels=2))
    config = TrialConfig(name="t", dataset="d.yaml", seed=1,
                         stage2=STAGE2.model_dump() | {"dropout": 0.0})
    return stage1.eval(), config, images()


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_killed_stage2_build_continues_from_its_checkpoint(tmp_path: Path,
                                                             one_thread: None) -> None:
    """A real SIGKILL in the middle of a cache build: the next load of the same config
    resumes from the entry's in-progress checkpoint and ends where an unkilled build does
    (with the same number of threads, as for any bit-identical comparison)."""
    cache = ArtifactCache(tmp_path / "cache")
    done = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(cache.root)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == -9, done.stderr
    partial = [path for path in (cache.root / "stage2").iterdir() if path.name.endswith(
        ".partial")]
    assert len(partial) == 1 and (partial[0] / CHECKPOINT).is_file()
    stage1, config, train = stage1_and_trial()
    resumed = load_stage2(config, stage1, "stage1-key", train, cache)
    assert resumed.built and not partial[0].exists()  # the finished entry replaces it
    fresh = load_stage2(config, stage1, "stage1-key", train, ArtifactCache(tmp_path / "fresh"))
    assert_same_weights(resumed.denoiser, fresh.denoiser)
    assert resumed.summary["final_train_loss"] == fresh.summary["final_train_loss"]
