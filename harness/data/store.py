"""The dataset store: a manifest's splits materialized once, pre-resized, as uint8 .npy files.

An entry `<cache root>/dataset/<key>/` holds `train.npy`, `eval.npy` (N x res x res x 3 uint8)
and `dataset.json` (the content hash and facts). It is built through ArtifactCache (file lock
and atomic rename: of many workers loading one dataset at once, one builds it) and opened
memory-mapped read-only, so processes share the page cache and read only the pages they touch;
a lookup checks the files' sizes, not their hashes.

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
STORE_FORMAT = 1  # bump when the layout of an entry or what its pixels are changes
FACTS_FILE = "dataset.json"
SPLITS = ("train", "eval")
_PIXEL_LIBRARIES = ("numpy", "pillow", "scikit-image")


@dataclass(frozen=True)
class Store:
    """An opened store entry: its folder, its read-only memory-mapped splits and its facts."""

    path: Path
    train: np.ndarray
    eval: np.ndarray
    facts: dict[str, Any]
    built: bool  # True when this call materialized the entry

    @property
    def content_hash(self) -> str:
        return str(self.facts["content_hash"])


def entry_bytes(entry: Path) -> int:
    """The size on disk of a store entry's files."""
    return sum(p.stat().st_size for p in entry.iterdir() if p.is_file())


def split_header(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """What the content hash takes in before a split's pixel bytes."""
    return f"{name}:{dtype.str}:{shape}\n".encode()


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


def write_splits(
    chunks: Iterable[Chunk], folder: Path, shapes: dict[str, tuple[int, ...]], what: str
) -> str:
    """Append the chunks to `folder/<split>.npy` as they come; returns the content hash.

    `shapes` holds the shape each split must have; `what` names the manifest and source in
    the DataError raised when the chunks do not add up to them.
    """
    digest = hashlib.sha256()
    stream = iter(chunks)
    pending = next(stream, None)
    for name in SPLITS:
        shape = shapes[name]
        digest.update(split_header(name, np.dtype(np.uint8), shape))
        written = 0
        with (folder / f"{name}.npy").open("wb") as handle:
            np.lib.format.write_array_header_1_0(
                handle, {"descr": "|u1", "fortran_order": False, "shape": shape}
            )
            while pending is not None and pending[0] == name:
                written = _append(handle, digest, pending[1], written, name, shape, what)
                pending = next(stream, None)
        if written != shape[0]:
            raise _shape_error(what, name, np.dtype(np.uint8), (written, *shape[1:]), shape)
    if pending is not None:
        raise DataError(f"{what} yielded {pending[0]!r} images after its eval images")
    return digest.hexdigest()


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


def read_splits(manifest: Manifest, manifest_path: Path) -> Split:
    """The source's (train, eval) in memory, without a store: for small data and tests."""
    res = manifest.resolution
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for name, images in get_source(manifest.source).chunks(manifest, manifest_path):
        parts[name].append(images)
    train, eval_ = (
        np.concatenate(parts[n]) if parts[n] else np.empty((0, res, res, 3), np.uint8)
        for n in SPLITS
    )
    return train, eval_


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
    return Store(entry.path, train, eval_, facts, entry.built)


def _build(manifest: Manifest, manifest_path: Path, source: Source, key: str, folder: Path
           ) -> None:
    res = manifest.resolution
    counts = {"train": manifest.splits.train, "eval": manifest.splits.eval}
    shapes = {name: (count, res, res, 3) for name, count in counts.items()}
    log.info("materializing %s (source %s) into the dataset store", manifest_path, source.name)
    start = time.perf_counter()
    what = f"{manifest_path}: source {source.name!r}"
    content = write_splits(_logged(source.chunks(manifest, manifest_path), counts), folder,
                           shapes, what)
    facts = {
        "content_hash": content,
        "name": manifest.name,
        "source": source.name,
        "resolution": res,
        "shapes": shapes,
        "manifest": str(manifest_path),
        "key": key,
        "format": STORE_FORMAT,
        "build_seconds": round(time.perf_counter() - start, 3),
    }
    (folder / FACTS_FILE).write_text(json.dumps(facts, indent=2) + "\n")


def _logged(chunks: Iterable[Chunk], counts: dict[str, int]) -> Iterator[Chunk]:
    """The chunks, logging progress about every tenth of the images."""
    total, done, step = sum(counts.values()), 0, max(1, sum(counts.values()) // 10)
    for chunk in chunks:
        before, done = done, done + len(chunk[1])
        if done // step > before // step:
            log.info("dataset store: %d of %d images written", done, total)
        yield chunk
