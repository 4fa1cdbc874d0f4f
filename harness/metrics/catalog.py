"""What a logged metric name means: its registered direction and whether it depends on N.

Runs log metrics under a prefix (`recon/psnr`, `stage1/rfid`, `sample/kid`); the part after
the last `/` is the registered name of a pairwise metric or an output of a set metric.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.metrics.registry import PAIRWISE
from harness.metrics.result import CI_HIGH, CI_LOW
from harness.metrics.sets import SET_METRICS


@dataclass(frozen=True)
class MetricFacts:
    higher_is_better: bool
    depends_on_n: bool  # comparable only at equal N (FID, IS, precision/recall)


def registered_name(logged: str) -> str:
    """`stage1/rfid` -> `rfid`."""
    return logged.rsplit("/", 1)[-1]


def describe(logged: str) -> MetricFacts | None:
    """The registry's facts for a logged metric name; None for names it does not score
    (timings, counts, training losses), for spreads such as `kid_std` and for interval
    bounds such as `fid_ci_low` (they are not scores), and for one class's value of a
    by-class metric (`kid_per_class/<class>`, whatever the class is called)."""
    name = registered_name(logged)
    if name.endswith((CI_LOW, CI_HIGH)) or _class_value(logged):
        return None
    if name in PAIRWISE:
        return MetricFacts(PAIRWISE[name].higher_is_better, depends_on_n=False)
    for metric in SET_METRICS.values():
        # `<metric>_std` is the spread over subsets or splits, not a score to gate on.
        if name in metric.outputs and name != f"{metric.name}_std":
            return MetricFacts(metric.higher_is_better, metric.depends_on_n)
    return None


def _class_value(logged: str) -> bool:
    """`sample/kid_per_class/<class>`: the part before the class names a by-class metric."""
    parent = logged.rsplit("/", 2)[-2] if logged.count("/") else ""
    return parent in SET_METRICS and SET_METRICS[parent].by_class
