"""Source `cifar10_python`: the official CIFAR-10 python batches in a local folder."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.data.images import center_crop_resize
from harness.data.manifest import Manifest, Split, data_error, data_path, register_source, take

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"


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


def _read_batch(file: Path, manifest: Manifest, mpath: Path) -> np.ndarray:
    try:
        with file.open("rb") as fh:
            batch = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
        data = np.asarray(batch[b"data"])
    except Exception as exc:  # every failure here means a corrupted file
        problem = f"not a CIFAR-10 python batch ({type(exc).__name__}: {exc})"
        raise data_error(file, problem, manifest, mpath) from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        problem = f"b'data' is {data.dtype} {data.shape}, expected uint8 N x 3072"
        raise data_error(file, problem, manifest, mpath)
    # Each row holds the 32x32 red plane, then green, then blue (row-major within a plane).
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


@register_source("cifar10_python", needs_path=True)
def cifar10_python(manifest: Manifest, manifest_path: Path) -> Split:
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
    train = np.concatenate(
        [_read_batch(folder / n, manifest, manifest_path) for n in CIFAR10_TRAIN_FILES]
    )
    test_file = folder / CIFAR10_TEST_FILE
    test = _read_batch(test_file, manifest, manifest_path)
    train = take(train, manifest.splits.train, "splits.train", folder, manifest, manifest_path)
    test = take(test, manifest.splits.eval, "splits.eval", test_file, manifest, manifest_path)
    res = manifest.resolution
    return center_crop_resize(train, res), center_crop_resize(test, res)
