"""The registry of pairwise metrics: looked up by name, each with its direction of better
and what it runs on (set metrics are registered in `harness.metrics.sets`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# (real, fake) -> value; a metric registered with on_device=True also takes `device=`
PairwiseFn = Callable[..., float]


@dataclass(frozen=True)
class Provenance:
    """What a metric runs on (network and settings, weights hash), or why it cannot run now."""

    extractor: str | None = None
    weights_sha256: str | None = None
    unavailable_reason: str | None = None


class MetricUnavailable(ValueError):
    """Raised by a metric that cannot run on these inputs; evaluate() records the reason."""


def _needs_nothing() -> Provenance:
    return Provenance()


@dataclass(frozen=True)
class PairwiseMetric:
    """A metric over paired uint8 NHWC image sets (reconstruction vs original)."""

    name: str
    fn: PairwiseFn
    higher_is_better: bool
    description: str
    provenance: Callable[[], Provenance] = _needs_nothing  # metrics that need weights say so
    on_device: bool = False  # runs a network: fn takes the torch device as `device=`

    def unavailable_reason(self) -> str | None:
        return self.provenance().unavailable_reason

    def compute(self, real: np.ndarray, fake: np.ndarray, device: torch.device | str = "cpu"
                ) -> float:
        """The value on these pairs; a metric that runs a network runs it on `device`."""
        return self.fn(real, fake, device=device) if self.on_device else self.fn(real, fake)


PAIRWISE: dict[str, PairwiseMetric] = {}


def register_pairwise(name: str, higher_is_better: bool, description: str,
                      provenance: Callable[[], Provenance] = _needs_nothing,
                      on_device: bool = False) -> Callable[[PairwiseFn], PairwiseFn]:
    def add(fn: PairwiseFn) -> PairwiseFn:
        PAIRWISE[name] = PairwiseMetric(name, fn, higher_is_better, description, provenance,
                                        on_device)
        return fn
    return add


def get_pairwise(name: str) -> PairwiseMetric:
    if name not in PAIRWISE:
        raise KeyError(f"unknown metric {name!r}; registered: {', '.join(sorted(PAIRWISE))}")
    return PAIRWISE[name]

