"""Checkpoints inside a long training run, so that a killed run continues where it stopped.

Every `checkpoint_every` steps a stage saves its whole training state (weights, EMA,
optimizer, gradient scaler, RNG states, step, loss history) into the in-progress folder of
its cache entry, `<cache>/<kind>/.<key>.partial/`. The key is the one the finished model
will have, so any re-run of the same config (after a kill, `harness run --resume`, or a new
sweep) finds it and continues; the folder is removed once the entry is complete. The
stage's cache lock is held while it trains, so one process at a time writes a checkpoint.

On the CPU, N steps, a kill, then the remaining steps give the same weights bit for bit as
one uninterrupted run (tests/stages/test_checkpoints.py).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.cache import ArtifactCache

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class Checkpoints:
    """Where a run's checkpoints go and how often; `folder` None: never."""

    folder: Path | None = None
    every: int = 0

    @classmethod
    def for_entry(cls, cache: ArtifactCache, kind: str, key: str, every: int) -> Checkpoints:
        return cls(cache.path(kind, key).parent / f".{key}.partial", every)

    def due(self, step: int, total: int) -> bool:
        """A checkpoint at this step (none at the last: the finished entry replaces it)."""
        return self.folder is not None and self.every > 0 and step % self.every == 0 \
            and step < total

    def save(self, state: dict[str, Any]) -> None:
        """Write the state atomically: a kill while saving leaves the previous checkpoint."""
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = self.folder / f"{CHECKPOINT}.{os.getpid()}.tmp"
        torch.save(state, staging)
        os.replace(staging, self.folder / CHECKPOINT)
        log.info("checkpoint at step %d in %s", state["step"], self.folder)

    def load(self) -> dict[str, Any] | None:
        """The latest checkpoint (CPU tensors), or None."""
        if self.folder is None or not (self.folder / CHECKPOINT).is_file():
            return None
        state = torch.load(self.folder / CHECKPOINT, map_location="cpu", weights_only=True)
        log.info("resuming from the checkpoint at step %d in %s", state["step"], self.folder)
        return state

    def clear(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def rng_states(numpy_rng: np.random.Generator | None = None,
               **generators: torch.Generator) -> dict[str, Any]:
    """Every random stream a training step draws from: torch's global CPU (and CUDA)
    generators, and the run's own numpy generator and torch generators (by name) when it has
    them."""
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    if numpy_rng is not None:
        states["numpy"] = numpy_rng.bit_generator.state
    return states | {name: generator.get_state() for name, generator in generators.items()}


def restore_rng_states(states: dict[str, Any], numpy_rng: np.random.Generator | None = None,
                       **generators: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if numpy_rng is not None:
        numpy_rng.bit_generator.state = states["numpy"]
    for name, generator in generators.items():
        generator.set_state(states[name])
