"""Source `cifar10_python`: the official CIFAR-10 python batches in a local folder.

A chunked source: one batch file (10,000 images) is in memory at a time, resized in chunks cut
at the same places as one resize of the whole split, so the pixels are those of one resize.
Labels: each batch's `b'labels'`, indices into the ten CIFAR10_CLASSES.
"""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.data.images import RESIZE_CHUNK, center_crop_resize, rechunk
from harness.data.manifest import (
    Chunk,
    Manifest,
    data_error,
    data_path,
    register_source,
    too_few,
)

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only: a pickle can otherwise run code."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the pickle")
        return super().find_class(module, name)


def _read_batch(file: Path, manifest: Manifest, mpath: Path) -> tuple[np.ndarray, np.ndarray]:
    """The batch's images (N x 32 x 32 x 3 uint8) and labels (N int64)."""
    try:
        with file.open("rb") as fh:
            batch = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
        data = np.asarray(batch[b"data"])
        raw_labels = batch[b"labels"]
    except Exception as exc:  # every failure here means a corrupted file
        problem = f"not a CIFAR-10 python batch ({type(exc).__name__}: {exc})"
        raise data_error(file, problem, manifest, mpath) from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        problem = f"b'data' is {data.dtype} {data.shape}, expected uint8 N x 3072"
        raise data_error(file, problem, manifest, mpath)
    labels = _labels(raw_labels, len(data))
    if labels is None:
        problem = (f"b'labels' is not a list of {len(data)} integers in 0..9 "
                   f"(got {type(raw_labels).__name__} {np.shape(raw_labels)})")
        raise data_error(file, problem, manifest, mpath)
    # Each row holds the 32x32 red plane, then green, then blue (row-major within a plane).
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _labels(raw: object, count: int) -> np.ndarray | None:
    """`raw` as int64 labels if it is a list or array of `count` integers in 0..9, else None."""
    if not isinstance(raw, (list, tuple, np.ndarray)):
        return None
    if isinstance(raw, (list, tuple)) and not all(
        isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in raw
    ):
        return None
    labels = np.asarray(raw)
    if len(raw) == 0:
        labels = labels.astype(np.int64)
    if labels.dtype.kind not in "iu" or labels.shape != (count,):
        return None
    if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        return None
    return labels.astype(np.int64)


def _first_images(
    files: list[Path], count: int, key: str, where: Path, manifest: Manifest, mpath: Path
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The first `count` images of the batch files and their labels, in order, one file in
    memory at a time; a DataError naming `where` if they hold fewer. Every file is read, and
    so checked."""
    held = 0
    for file in files:
        images, labels = _read_batch(file, manifest, mpath)
        if held < count:
            yield images[: count - held], labels[: count - held]
        held += len(images)
    if held < count:
        raise too_few(where, held, count, key, manifest, mpath)


def _split_chunks(
    batches: Iterator[tuple[np.ndarray, np.ndarray]], res: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The images regrouped into RESIZE_CHUNK chunks and resized, each with its labels (both
    regrouped at the same places)."""
    for_images, for_labels = itertools.tee(batches)
    images = rechunk((batch for batch, _ in for_images), RESIZE_CHUNK)
    labels = rechunk((batch_labels for _, batch_labels in for_labels), RESIZE_CHUNK)
    for chunk, chunk_labels in zip(images, labels, strict=True):
        yield center_crop_resize(chunk, res), chunk_labels


def cifar10_classes(manifest: Manifest, manifest_path: Path) -> tuple[str, ...]:
    """The ten CIFAR-10 class names, in label order."""
    return CIFAR10_CLASSES


@register_source("cifar10_python", needs_path=True, chunked=True, classes=cifar10_classes)
def cifar10_python(manifest: Manifest, manifest_path: Path) -> Iterator[Chunk]:
    """The official CIFAR-10 python batches: train from data_batch_1..5, eval from test_batch."""
    folder = data_path(manifest, manifest_path)
    if not folder.is_dir():
        raise data_error(folder, "CIFAR-10 folder not found", manifest, manifest_path)
    # Every file is checked before any is read, so a missing one is reported first.
    for name in (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE):
        if not (folder / name).is_file():
            raise data_error(
                folder / name, "CIFAR-10 batch file not found", manifest, manifest_path
            )
    test_file = folder / CIFAR10_TEST_FILE
    splits = (
        ("train", [folder / n for n in CIFAR10_TRAIN_FILES], folder, manifest.splits.train),
        ("eval", [test_file], test_file, manifest.splits.eval),
    )
    for key, files, where, count in splits:
        batches = _first_images(files, count, f"splits.{key}", where, manifest, manifest_path)
        for images, labels in _split_chunks(batches, manifest.resolution):
            yield key, images, labels
