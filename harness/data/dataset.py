"""Datasets: a manifest's splits as read-only uint8 NHWC arrays, memory-mapped from the store.

`load_dataset` materializes the splits once into the dataset store (harness.data.store) under
the cache root and maps them; a second load in the same process returns the same Dataset. A
labeled source's class labels come with the splits: int64 class indices into `classes`.
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
    train_labels: np.ndarray | None = None  # int64 indices into `classes`; None: unlabeled
    eval_labels: np.ndarray | None = None
    classes: tuple[str, ...] = ()  # the class names; empty for an unlabeled source
    labels_hash: str | None = None  # sha256 over the class names and both splits' labels

    @property
    def num_classes(self) -> int:
        """How many classes the labels index (0 for an unlabeled dataset)."""
        return len(self.classes)


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
        train_labels=store.train_labels,
        eval_labels=store.eval_labels,
        classes=store.classes,
        labels_hash=store.labels_hash,
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
        *_describe_labels(dataset),
    ]
    if dataset.store is not None:
        lines.append(f"store     {dataset.store} ({entry_bytes(dataset.store) / 2**20:.1f} MiB)")
    for key, images in (("train", train), ("eval", eval_)):
        if len(images):
            mean = images.reshape(-1, images.shape[-1]).mean(axis=0)
            lines.append(f"mean RGB  {key} " + " ".join(f"{m:.1f}" for m in mean))
    return "\n".join(lines)


_LISTED = 12  # classes beyond this many are summarized rather than listed one by one


def _describe_labels(dataset: Dataset) -> list[str]:
    """The classes line and, for a labeled dataset, the per-split class counts line."""
    classes = dataset.classes
    if not classes:
        return ["classes   none (unlabeled source)"]
    names = ", ".join(classes[:_LISTED])
    if len(classes) > _LISTED:
        names += f", ... ({len(classes) - _LISTED} more)"
    counts = []
    for key, labels in (("train", dataset.train_labels), ("eval", dataset.eval_labels)):
        per_class = np.bincount(np.asarray(labels, np.int64), minlength=len(classes))
        listed = " ".join(str(n) for n in per_class[:_LISTED])
        if len(classes) > _LISTED:
            listed = (f"min {per_class.min()} max {per_class.max()} mean "
                      f"{per_class.mean():.1f} (first {listed} ...)")
        counts.append(f"{key} {listed}")
    return [f"classes   {len(classes)}: {names}", f"counts    {' / '.join(counts)}"]


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
