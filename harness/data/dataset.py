"""Datasets: a manifest's splits materialized as read-only uint8 NHWC arrays, cached per process."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.images import save_grid
from harness.data.manifest import get_source, load_manifest, resolve_path
from harness.errors import DataError


@dataclass(frozen=True, eq=False)
class Dataset:
    """A materialized manifest: read-only uint8 NHWC arrays per split."""

    name: str
    train: np.ndarray
    eval: np.ndarray
    resolution: int
    content_hash: str
    manifest_path: Path
    source: str = ""


def content_hash(train: np.ndarray, eval_: np.ndarray) -> str:
    """sha256 over both splits' dtypes, shapes and pixel bytes."""
    digest = hashlib.sha256()
    for name, images in (("train", train), ("eval", eval_)):
        digest.update(f"{name}:{images.dtype.str}:{images.shape}\n".encode())
        digest.update(np.ascontiguousarray(images).data)
    return digest.hexdigest()


def load_dataset(manifest_path: str | Path) -> Dataset:
    """Materialize a manifest's splits; repeated loads in one process reuse the arrays."""
    path = Path(manifest_path).expanduser().resolve()
    manifest = load_manifest(path)
    data_stamp = None
    if manifest.path is not None:
        data = resolve_path(manifest.path, path)
        data_stamp = data.stat().st_mtime_ns if data.exists() else None
    # The manifest's bytes, not its mtime: two edits within one timestamp tick must not collide.
    manifest_digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return _load_cached(path, manifest_digest, data_stamp)


@functools.lru_cache(maxsize=8)
def _load_cached(path: Path, manifest_digest: str, data_stamp: int | None) -> Dataset:
    manifest = load_manifest(path)
    train, eval_ = get_source(manifest.source).load(manifest, path)
    res = manifest.resolution
    for key, images, count in (
        ("train", train, manifest.splits.train),
        ("eval", eval_, manifest.splits.eval),
    ):
        if images.dtype != np.uint8 or images.shape != (count, res, res, 3):
            raise DataError(
                f"{path}: source {manifest.source!r} returned {key} as {images.dtype} "
                f"{images.shape}, expected uint8 {(count, res, res, 3)}"
            )
        images.setflags(write=False)  # the cached arrays are shared by every caller
    return Dataset(
        name=manifest.name,
        train=train,
        eval=eval_,
        resolution=res,
        content_hash=content_hash(train, eval_),
        manifest_path=path,
        source=manifest.source,
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
    for key, images in (("train", train), ("eval", eval_)):
        if len(images):
            mean = images.reshape(-1, images.shape[-1]).mean(axis=0)
            lines.append(f"mean RGB  {key} " + " ".join(f"{m:.1f}" for m in mean))
    return "\n".join(lines)


def show(manifest_path: str | Path, out_png: str | Path | None = None) -> str:
    """`harness data show`: summary text plus a PNG grid of the first 64 train images."""
    dataset = load_dataset(manifest_path)
    out = Path(out_png) if out_png is not None else Path(f"{Path(manifest_path).stem}_preview.png")
    save_grid(dataset.train[:64], out, nrow=8)
    return f"{describe(dataset)}\npreview   {out}"
