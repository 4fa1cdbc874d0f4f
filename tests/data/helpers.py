"""Helpers of the data tests: the shipped manifests and small manifests written on the fly."""

from __future__ import annotations

from pathlib import Path

import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "data_manifests"


def write_manifest(folder: Path, file: str = "m.yaml", **fields: object) -> Path:
    """A manifest YAML in `folder` built from small defaults overridden by `fields`."""
    body: dict[str, object] = {
        "name": "t",
        "source": "synthetic_shapes",
        "resolution": 16,
        "splits": {"train": 8, "eval": 4},
    }
    body.update(fields)
    path = folder / file
    path.write_text(yaml.safe_dump(body))
    return path
