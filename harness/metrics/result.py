"""MetricResult: a value with its N, extractor, weights hash and interval, or why it is
unavailable."""

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
    interval: tuple[float, float] | None = None  # (low, high), e.g. a 95% bootstrap interval
    interval_method: str | None = None  # how the interval was made (logged as a tag)

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


CI_LOW, CI_HIGH = "_ci_low", "_ci_high"


def interval_names(name: str) -> tuple[str, str]:
    """The logged names of a metric's interval bounds: `fid` -> (`fid_ci_low`, `fid_ci_high`)."""
    return f"{name}{CI_LOW}", f"{name}{CI_HIGH}"


def mlflow_fields(results: list[MetricResult], prefix: str = "") -> MlflowFields:
    """Values and interval bounds (`<name>_ci_low`, `<name>_ci_high`) as metrics; N, extractor,
    weights hash, how the interval was made (`<name>.interval`) and unavailable reasons as
    tags, so that a run's params are its configuration alone."""
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
        if result.interval is not None and all(math.isfinite(b) for b in result.interval):
            low, high = interval_names(key)
            metrics[low], metrics[high] = (float(b) for b in result.interval)
            tags[f"{key}.interval"] = result.interval_method or "interval"
    return MlflowFields(metrics, tags)
