"""The dataset store: a manifest's splits materialized once, pre-resized, as uint8 .npy files.

An entry `<cache root>/dataset/<key>/` holds `train.npy`, `eval.npy` (N x res x res x 3 uint8),
for a labeled source `train_labels.npy` and `eval_labels.npy` (N int64 class indices), and
`dataset.json` (the content hash, for a labeled source the class names and the labels hash, and
facts). The content hash covers the pixels only, so labels never move it. An entry is built
through ArtifactCache (file lock and atomic rename: of many workers loading one dataset at once,
one builds it) and opened memory-mapped read-only, so processes share the page cache and read
only the pages they touch; a lookup checks the files' sizes, not their hashes.

The key is the sha256 of STORE_FORMAT, the manifest's bytes, a stamp of the local data it reads
(paths, sizes and mtimes of its files) and a stamp of the code and libraries that compute the
pixels. The splits are written chunk by chunk as the source yields them, and the content hash
is computed on the way, so a chunked source never holds a whole split in memory and opening an
entry never reads its pixels.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from harness.cache import ArtifactCache
from harness.data.manifest import Chunk, Manifest, Source, Split, get_source
from harness.errors import DataError

log = logging.getLogger(__name__)

STORE_KIND = "dataset"  # the ArtifactCache kind of store entries
STORE_FORMAT = 2  # bump when the layout of an entry or what its pixels are changes (2: labels)
FACTS_FILE = "dataset.json"
SPLITS = ("train", "eval")
LABELS_SUFFIX = "_labels"  # train_labels.npy, eval_labels.npy
_PIXEL_LIBRARIES = ("numpy", "pillow", "scikit-image")


@dataclass(frozen=True)
class Store:
    """An opened store entry: its folder, its read-only memory-mapped splits and its facts."""

    path: Path
    train: np.ndarray
    eval: np.ndarray
    facts: dict[str, Any]
    built: bool  # True when this call materialized the entry
    train_labels: np.ndarray | None = None  # int64 class indices; None for an unlabeled source
    eval_labels: np.ndarray | None = None

    @property
    def content_hash(self) -> str:
        return str(self.facts["content_hash"])

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.facts.get("classes", ()))

    @property
    def labels_hash(self) -> str | None:
        value = self.facts.get("labels_hash")
        return None if value is None else str(value)


def entry_bytes(entry: Path) -> int:
    """The size on disk of a store entry's files."""
    return sum(p.stat().st_size for p in entry.iterdir() if p.is_file())


def split_header(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """What the content hash takes in before a split's pixel bytes."""
    return f"{name}:{dtype.str}:{shape}\n".encode()


def labels_hash(classes: Iterable[str], train_labels: np.ndarray, eval_labels: np.ndarray
                ) -> str:
    """sha256 over the class names and both splits' labels (as int64)."""
    digest = hashlib.sha256(json.dumps(list(classes)).encode() + b"\n")
    for name, labels in (("train", train_labels), ("eval", eval_labels)):
        data = np.ascontiguousarray(labels, np.int64)
        digest.update(split_header(name, data.dtype, data.shape))
        digest.update(data.data)
    return digest.hexdigest()


# --------------------------------------------------------------------------- the key


def store_key(manifest: Manifest, manifest_path: Path) -> str:
    """The entry's key: changes with the manifest's bytes, its data, the code and the format."""
    source = get_source(manifest.source)
    inputs = {
        "format": STORE_FORMAT,
        "manifest_sha256": hashlib.sha256(manifest_path.read_bytes()).hexdigest(),
        "data": source.data_stamp(manifest, manifest_path),
        "code": code_stamp(source.name),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


@functools.cache
def code_stamp(source_name: str) -> str:
    """sha256 of the source's module, harness/data/images.py and the versions of the libraries
    that compute pixels: a fix to how a source reads or resizes images rebuilds its stores."""
    from harness.data import images

    digest = hashlib.sha256()
    for module in (sys.modules[get_source(source_name).load.__module__], images):
        digest.update(Path(module.__file__ or "").read_bytes())
    for name in _PIXEL_LIBRARIES:
        digest.update(f"{name}={_version(name)}\n".encode())
    return digest.hexdigest()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class Written:
    """What write_splits wrote: the content hash and, for a labeled source, the labels."""

    content_hash: str
    labels: Split | None  # (train, eval) int64 labels


def write_splits(
    chunks: Iterable[Chunk], folder: Path, shapes: dict[str, tuple[int, ...]], what: str
) -> Written:
    """Append the chunks to `folder/<split>.npy` as they come, and their labels, if any, to
    `folder/<split>_labels.npy`; returns the content hash (of the pixels) and the labels.

    `shapes` holds the shape each split must have; `what` names the manifest and source in
    the DataError raised when the chunks do not add up to them, or when some chunks carry
    labels and others do not.
    """
    digest = hashlib.sha256()
    stream = iter(chunks)
    pending = next(stream, None)
    labeled = pending is not None and pending[2] is not None
    labels: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for name in SPLITS:
        shape = shapes[name]
        digest.update(split_header(name, np.dtype(np.uint8), shape))
        written = 0
        with (folder / f"{name}.npy").open("wb") as handle:
            np.lib.format.write_array_header_1_0(
                handle, {"descr": "|u1", "fortran_order": False, "shape": shape}
            )
            while pending is not None and pending[0] == name:
                _, images, chunk_labels = pending
                if labeled:
                    labels[name].append(_chunk_labels(chunk_labels, images, name, what))
                elif chunk_labels is not None:
                    raise DataError(f"{what} yielded labeled {name} images after unlabeled ones")
                written = _append(handle, digest, images, written, name, shape, what)
                pending = next(stream, None)
        if written != shape[0]:
            raise _shape_error(what, name, np.dtype(np.uint8), (written, *shape[1:]), shape)
    if pending is not None:
        raise DataError(f"{what} yielded {pending[0]!r} images after its eval images")
    if not labeled:
        return Written(digest.hexdigest(), None)
    joined = {n: np.concatenate([np.empty(0, np.int64), *labels[n]]) for n in SPLITS}
    for name, values in joined.items():
        np.save(folder / f"{name}{LABELS_SUFFIX}.npy", values)
    return Written(digest.hexdigest(), (joined["train"], joined["eval"]))


def _chunk_labels(labels: np.ndarray | None, images: np.ndarray, name: str, what: str
                  ) -> np.ndarray:
    """A chunk's labels as int64; a DataError unless there is one integer >= 0 per image."""
    if labels is None:
        raise DataError(f"{what} yielded {name} images without labels after labeled ones")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.shape != (len(images),):
        raise DataError(f"{what} returned {name} labels as {labels.dtype} {labels.shape}, "
                        f"expected integers ({len(images)},)")
    if labels.size and labels.min() < 0:
        raise DataError(f"{what} returned a negative {name} label ({labels.min()})")
    return labels.astype(np.int64)


def _append(
    handle: Any,
    digest: Any,
    images: np.ndarray,
    written: int,
    name: str,
    shape: tuple[int, ...],
    what: str,
) -> int:
    """Write one chunk of split `name` after the `written` images before it; the new count."""
    total = (written + len(images), *images.shape[1:])
    if images.dtype != np.uint8 or images.shape[1:] != shape[1:] or total[0] > shape[0]:
        raise _shape_error(what, name, images.dtype, total, shape)
    data = np.ascontiguousarray(images).data
    handle.write(data)
    digest.update(data)
    return total[0]


def _shape_error(
    what: str, name: str, dtype: np.dtype, shape: tuple[int, ...], expected: tuple[int, ...]
) -> DataError:
    return DataError(f"{what} returned {name} as {dtype} {shape}, expected uint8 {expected}")


def check_classes(classes: tuple[str, ...], labels: Split | None, what: str) -> None:
    """A DataError unless the source's class names fit the labels its chunks carried."""
    if labels is None:
        if classes:
            raise DataError(f"{what} has {len(classes)} classes but yielded no labels")
        return
    if not classes:
        raise DataError(f"{what} yielded labels but names no classes")
    if len(set(classes)) != len(classes) or not all(isinstance(c, str) for c in classes):
        raise DataError(f"{what} names classes that are not distinct strings: {list(classes)}")
    top = max((int(values.max()) for values in labels if values.size), default=-1)
    if top >= len(classes):
        raise DataError(f"{what} yielded label {top} but has only {len(classes)} classes")


def read_source(manifest: Manifest, manifest_path: Path) -> tuple[Split, Split | None]:
    """The source's (train, eval) and their (train, eval) labels (None for an unlabeled
    source) in memory, without a store: for small data and tests."""
    res = manifest.resolution
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    label_parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    labeled = False
    for name, images, labels in get_source(manifest.source).chunks(manifest, manifest_path):
        parts[name].append(images)
        if labels is not None:
            labeled = True
            label_parts[name].append(np.asarray(labels, np.int64))
    train, eval_ = (
        np.concatenate(parts[n]) if parts[n] else np.empty((0, res, res, 3), np.uint8)
        for n in SPLITS
    )
    if not labeled:
        return (train, eval_), None
    train_labels, eval_labels = (np.concatenate([np.empty(0, np.int64), *label_parts[n]])
                                 for n in SPLITS)
    return (train, eval_), (train_labels, eval_labels)


def read_splits(manifest: Manifest, manifest_path: Path) -> Split:
    """The source's (train, eval) in memory, without a store: for small data and tests."""
    return read_source(manifest, manifest_path)[0]


# --------------------------------------------------------------------------- entries


def open_store(
    manifest: Manifest, manifest_path: Path, key: str, cache: ArtifactCache
) -> Store:
    """The manifest's store entry under `key`, materialized first if it does not exist."""
    source = get_source(manifest.source)

    def build(folder: Path) -> None:
        _build(manifest, manifest_path, source, key, folder)

    entry = cache.get_or_build(STORE_KIND, key, build, verify="size")
    facts = json.loads((entry.path / FACTS_FILE).read_text())
    train, eval_ = (np.load(entry.path / f"{name}.npy", mmap_mode="r") for name in SPLITS)
    if "labels_hash" not in facts:
        return Store(entry.path, train, eval_, facts, entry.built)
    train_labels, eval_labels = (
        np.load(entry.path / f"{name}{LABELS_SUFFIX}.npy", mmap_mode="r") for name in SPLITS
    )
    return Store(entry.path, train, eval_, facts, entry.built, train_labels, eval_labels)


def _build(manifest: Manifest, manifest_path: Path, source: Source, key: str, folder: Path
           ) -> None:
    res = manifest.resolution
    counts = {"train": manifest.splits.train, "eval": manifest.splits.eval}
    shapes = {name: (count, res, res, 3) for name, count in counts.items()}
    log.info("materializing %s (source %s) into the dataset store", manifest_path, source.name)
    start = time.perf_counter()
    what = f"{manifest_path}: source {source.name!r}"
    written = write_splits(_logged(source.chunks(manifest, manifest_path), counts), folder,
                           shapes, what)
    classes = source.class_names(manifest, manifest_path)
    check_classes(classes, written.labels, what)
    facts: dict[str, Any] = {
        "content_hash": written.content_hash,
        "name": manifest.name,
        "source": source.name,
        "resolution": res,
        "shapes": shapes,
        "manifest": str(manifest_path),
        "key": key,
        "format": STORE_FORMAT,
        "build_seconds": round(time.perf_counter() - start, 3),
    }
    if written.labels is not None:
        facts["classes"] = list(classes)
        facts["labels_hash"] = labels_hash(classes, *written.labels)
    (folder / FACTS_FILE).write_text(json.dumps(facts, indent=2) + "\n")


def _logged(chunks: Iterable[Chunk], counts: dict[str, int]) -> Iterator[Chunk]:
    """The chunks, logging progress about every tenth of the images."""
    total, done, step = sum(counts.values()), 0, max(1, sum(counts.values()) // 10)
    for chunk in chunks:
        before, done = done, done + len(chunk[1])
        if done // step > before // step:
            log.info("dataset store: %d of %d images written", done, total)
        yield chunk
