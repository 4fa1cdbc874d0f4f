"""Helpers of the data tests: the shipped manifests, small manifests and data written on the fly."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from harness.cache import ArtifactCache
from harness.data.manifest import load_manifest
from harness.data.sources.cifar10 import CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES
from harness.data.store import open_store, store_key

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


def cifar_labels(count: int, offset: int = 0) -> list[int]:
    """The labels write_cifar_batch gives `count` images: (offset + i * 7) mod 10."""
    return [(offset + i * 7) % 10 for i in range(count)]


def write_cifar_batch(path: Path, images: np.ndarray, labels: object = None, offset: int = 0
                      ) -> None:
    """Write a batch in the official layout: channel-major rows, bytes keys, protocol 2;
    `labels` default to `cifar_labels(len(images), offset)`."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    batch = {
        b"batch_label": b"synthetic batch",
        b"labels": cifar_labels(len(images), offset) if labels is None else labels,
        b"data": np.ascontiguousarray(rows, dtype=np.uint8),
        b"filenames": [b"img_%d.png" % i for i in range(len(images))],
    }
    with path.open("wb") as fh:
        pickle.dump(batch, fh, protocol=2)


def write_cifar_folder(folder: Path, per_batch: int, seed: int = 0) -> list[np.ndarray]:
    """The six official batch files of random images; returns their images, test batch last."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches = []
    for index, name in enumerate((*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE)):
        images = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        write_cifar_batch(folder / name, images, offset=index)
        batches.append(images)
    return batches


def write_noise_folder(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` PNGs of random noise and random sizes, two folder levels deep; sorted paths."""
    rng = np.random.default_rng(seed)
    files = []
    for i in range(count):
        sub = folder / f"part{i % 3}" / ("even" if i % 2 == 0 else "odd")
        sub.mkdir(parents=True, exist_ok=True)
        height, width = (int(side) for side in rng.integers(12, 48, 2))
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        files.append(sub / f"{i:03d}.png")
        Image.fromarray(pixels).save(files[-1])
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def open_store_in_a_process(job: tuple[str, str]) -> tuple[bool, str]:
    """Open (or build) the store of manifest `job[0]` under cache root `job[1]`: (built, hash).
    Here rather than in a test module so that a spawned process need not import torch."""
    manifest, cache_dir = Path(job[0]), Path(job[1])
    parsed = load_manifest(manifest)
    store = open_store(parsed, manifest, store_key(parsed, manifest), ArtifactCache(cache_dir))
    return store.built, store.content_hash
