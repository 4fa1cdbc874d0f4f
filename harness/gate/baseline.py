"""The regression gate's baseline file: per experiment, trial and metric, a value and its N.

A readable JSON committed beside the CI experiments, written by `harness check
--update-baseline`; it also records the machine it was made on, because values are exact
only on the same kind of machine (README, "Regression gate").
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
from harness.errors import ConfigError

FORMAT = "harness-check-baseline/1"


@dataclass(frozen=True)
class Measurement:
    value: float
    n: int | None  # images the value was computed at, when the run recorded it


# experiment name -> trial label -> metric name -> measurement
Measurements = dict[str, dict[str, dict[str, Measurement]]]


def machine() -> dict[str, str]:
    """What the values depend on besides the code: CPU, thread count, library versions."""
    import numpy
    import torch

    return {"platform": platform.platform(), "processor": platform.processor()
            or platform.machine(), "cpus": str(os.cpu_count()), "torch": torch.__version__,
            "numpy": numpy.__version__, "python": platform.python_version(),
            "harness": harness.__version__}


def read(path: Path) -> tuple[Measurements, dict[str, str]]:
    """Measurements and machine of a baseline file; a ConfigError naming the file and the
    key for anything malformed."""
    if not path.is_file():
        raise ConfigError(path, "", "baseline file not found; write it with "
                          "`harness check PATH --update-baseline`")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(path, "", f"not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "", "expected a JSON object at the top level")
    if data.get("format") != FORMAT:
        raise ConfigError(path, "format", f"expected {FORMAT!r}, got {data.get('format')!r}")
    experiments = _mapping(path, "experiments", data.get("experiments"))
    found: Measurements = {}
    for name, trials in experiments.items():
        found[name] = {}
        for label, metrics in _mapping(path, f"experiments.{name}", trials).items():
            key = f"experiments.{name}.{label}"
            found[name][label] = {metric: _measurement(path, f"{key}.{metric}", entry)
                                  for metric, entry in _mapping(path, key, metrics).items()}
    recorded = data.get("machine", {})
    return found, {str(k): str(v) for k, v in recorded.items()} if isinstance(
        recorded, dict) else {}


def _mapping(path: Path, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(path, key, f"expected a JSON object, got {type(value).__name__}")
    return value


def _measurement(path: Path, key: str, entry: Any) -> Measurement:
    entry = _mapping(path, key, entry)
    value, n = entry.get("value"), entry.get("n")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(path, f"{key}.value", f"expected a finite number, got {value!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(path, f"{key}.n", f"expected a positive integer or null, got {n!r}")
    return Measurement(float(value), n)


def write(path: Path, measurements: Measurements) -> None:
    """Write `measurements` into the file, keeping the experiments it already holds that
    were not measured now; keys sorted so a regenerated file diffs cleanly."""
    kept: Measurements = {}
    if path.is_file():
        try:
            kept = read(path)[0]
        except ConfigError:
            kept = {}  # a malformed file is replaced, not merged
    experiments = kept | measurements
    data = {"format": FORMAT, "machine": machine(), "experiments": {
        name: {label: {metric: {"value": m.value, "n": m.n}
                       for metric, m in sorted(metrics.items())}
               for label, metrics in sorted(trials.items())}
        for name, trials in sorted(experiments.items())}}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)
