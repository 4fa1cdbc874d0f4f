"""MetricResult: a value with its N, extractor and weights hash, or why it is unavailable."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class MetricResult:
    name: str
    value: float | None
    unavailable_reason: str | None
    num_images: int
    extractor: str | None = None
    weights_sha256: str | None = None
    num_reference: int | None = None  # real images the value was computed against, if any

    @property
    def available(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def unavailable(name: str, reason: str, num_images: int) -> MetricResult:
    return MetricResult(name, None, reason, num_images)


@dataclass(frozen=True)
class MlflowFields:
    metrics: dict[str, float]
    tags: dict[str, str]  # provenance (N, extractor, weights hash) and unavailable reasons


def mlflow_fields(results: list[MetricResult], prefix: str = "") -> MlflowFields:
    """Values as metrics; N, extractor, weights hash and unavailable reasons as tags, so that
    a run's params are its configuration alone."""
    metrics, tags = {}, {}
    for result in results:
        key = prefix + result.name
        if result.value is not None and math.isfinite(result.value):
            metrics[key] = float(result.value)
        elif result.value is not None:
            tags[f"{key}.unavailable"] = f"not finite ({result.value})"
        if result.unavailable_reason is not None:
            tags[f"{key}.unavailable"] = result.unavailable_reason[:5000]
        tags[f"{key}.num_images"] = str(result.num_images)
        if result.num_reference is not None:
            tags[f"{key}.num_reference"] = str(result.num_reference)
        if result.extractor is not None:
            tags[f"{key}.extractor"] = result.extractor
        if result.weights_sha256 is not None:
            tags[f"{key}.weights_sha256"] = result.weights_sha256
    return MlflowFields(metrics, tags)
