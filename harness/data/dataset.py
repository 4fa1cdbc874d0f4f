"""Datasets: a manifest's splits as read-only uint8 NHWC arrays, memory-mapped from the store.

`load_dataset` materializes the splits once into the dataset store (harness.data.store) under
the cache root and maps them; a second load in the same process returns the same Dataset.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.cache import ArtifactCache, default_cache_dir
from harness.data.images import save_grid
from harness.data.manifest import load_manifest
from harness.data.store import entry_bytes, open_store, split_header, store_key


@dataclass(frozen=True, eq=False)
class Dataset:
    """A materialized manifest: read-only uint8 NHWC arrays per split (memory-mapped)."""

    name: str
    train: np.ndarray
    eval: np.ndarray
    resolution: int
    content_hash: str
    manifest_path: Path
    source: str = ""
    store: Path | None = None  # the store entry the splits are mapped from


def content_hash(train: np.ndarray, eval_: np.ndarray) -> str:
    """sha256 over both splits' dtypes, shapes and pixel bytes (the store computes the same
    while it writes the splits)."""
    digest = hashlib.sha256()
    for name, images in (("train", train), ("eval", eval_)):
        digest.update(split_header(name, images.dtype, images.shape))
        digest.update(np.ascontiguousarray(images).data)
    return digest.hexdigest()


def load_dataset(manifest_path: str | Path, cache_dir: str | Path | None = None) -> Dataset:
    """The manifest's splits, from its store entry under `cache_dir` (default: the harness
    cache), materialized there first if needed; repeated loads in one process reuse them."""
    path = Path(manifest_path).expanduser().resolve()
    key = store_key(load_manifest(path), path)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return _load_cached(path, key, root.resolve())


@functools.lru_cache(maxsize=8)
def _load_cached(path: Path, key: str, cache_root: Path) -> Dataset:
    manifest = load_manifest(path)
    store = open_store(manifest, path, key, ArtifactCache(cache_root))
    return Dataset(
        name=manifest.name,
        train=store.train,
        eval=store.eval,
        resolution=manifest.resolution,
        content_hash=store.content_hash,
        manifest_path=path,
        source=manifest.source,
        store=store.path,
    )


def describe(dataset: Dataset) -> str:
    """A short human summary of a materialized dataset."""
    train, eval_ = dataset.train, dataset.eval
    lines = [
        f"dataset   {dataset.name} (source {dataset.source})",
        f"manifest  {dataset.manifest_path}",
        f"splits    train {len(train)}, eval {len(eval_)}",
        f"images    {'x'.join(str(d) for d in train.shape[1:])} {train.dtype}",
        f"hash      sha256:{dataset.content_hash}",
    ]
    if dataset.store is not None:
        lines.append(f"store     {dataset.store} ({entry_bytes(dataset.store) / 2**20:.1f} MiB)")
    for key, images in (("train", train), ("eval", eval_)):
        if len(images):
            mean = images.reshape(-1, images.shape[-1]).mean(axis=0)
            lines.append(f"mean RGB  {key} " + " ".join(f"{m:.1f}" for m in mean))
    return "\n".join(lines)


def show(
    manifest_path: str | Path,
    out_png: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> str:
    """`harness data show`: summary text plus a PNG grid of the first 64 train images."""
    dataset = load_dataset(manifest_path, cache_dir)
    out = Path(out_png) if out_png is not None else Path(f"{Path(manifest_path).stem}_preview.png")
    save_grid(dataset.train[:64], out, nrow=8)
    return f"{describe(dataset)}\npreview   {out}"
