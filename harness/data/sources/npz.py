"""Source `npz`: a local .npz file holding arrays `train` and `eval`.

A chunked source. A member stored uncompressed (`np.savez`) is memory-mapped from the file, so
a split larger than memory is converted and resized a chunk at a time; a compressed member
(`np.savez_compressed`) cannot be mapped and is read whole into memory first.

Labels (optional): arrays `train_labels` and `eval_labels`, both or neither, integer class
indices of shape (N,) with N at least the split's count (the first count are used) and values
>= 0; and, optionally with them, `classes`, a 1-D array of distinct class names (strings) that
every label indexes. Without `classes` the names are class_0 .. class_<largest label>. Without
label arrays the data is unlabeled.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.images import RESIZE_CHUNK, as_uint8, center_crop_resize
from harness.data.manifest import (
    Chunk,
    Manifest,
    data_error,
    data_path,
    register_source,
    sha256_file,
    too_few,
)
from harness.errors import DataError

LABEL_ARRAYS = {"train": "train_labels", "eval": "eval_labels"}
CLASSES_ARRAY = "classes"
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., file name and extra field lengths
_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _mapped_member(file: Path, name: str) -> np.ndarray | None:
    """Member `name` of the .npz memory-mapped, or None unless it is a stored plain array."""
    with zipfile.ZipFile(file) as archive:
        info = archive.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1:  # bit 0: encrypted
        return None
    with file.open("rb") as handle:
        handle.seek(info.header_offset)
        signature, name_len, extra_len = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
        if signature != b"PK\x03\x04":
            return None
        handle.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
        reader = _NPY_HEADER_READERS.get(np.lib.format.read_magic(handle))
        if reader is None:
            return None
        shape, fortran_order, dtype = reader(handle)
        offset = handle.tell()
    if dtype.hasobject:
        return None
    order = "F" if fortran_order else "C"
    return np.memmap(file, dtype, "r", offset, shape, order)


def _member(arrays: Any, file: Path, key: str, manifest: Manifest, mpath: Path) -> np.ndarray:
    if key not in arrays.files:
        problem = f"has no array named {key!r} (found {arrays.files})"
        raise data_error(file, problem, manifest, mpath)
    mapped = _mapped_member(file, f"{key}.npy")
    return mapped if mapped is not None else arrays[key]


def _split(
    arrays: Any, key: str, count: int, file: Path, manifest: Manifest, mpath: Path
) -> Iterator[np.ndarray]:
    """The first `count` images of array `key` as uint8, resized RESIZE_CHUNK at a time."""
    images = _member(arrays, file, key, manifest, mpath)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise data_error(
            file, f"array {key!r} is {images.shape}, expected N x H x W x 3", manifest, mpath
        )
    if images.dtype != np.uint8 and (
        images.dtype.kind != "f" or (images.size and (images.min() < 0 or images.max() > 1))
    ):
        raise data_error(
            file,
            f"array {key!r} is {images.dtype}; expected uint8 or floats in [0, 1]",
            manifest,
            mpath,
        )
    if len(images) < count:
        raise too_few(file, len(images), count, f"splits.{key}", manifest, mpath)
    for start in range(0, count, RESIZE_CHUNK):
        chunk = as_uint8(images[start : min(start + RESIZE_CHUNK, count)])
        yield center_crop_resize(chunk, manifest.resolution)


def _labels(
    arrays: Any, file: Path, manifest: Manifest, mpath: Path
) -> tuple[tuple[str, ...], dict[str, np.ndarray]] | None:
    """The class names and the int64 labels per split; None if the file holds no labels.
    A DataError naming the file and the array for labels that are not as documented."""

    def fail(array: str, problem: str) -> DataError:
        return data_error(file, f"array {array!r} {problem}", manifest, mpath)

    present = [name for name in LABEL_ARRAYS.values() if name in arrays.files]
    if not present:
        if CLASSES_ARRAY in arrays.files:
            raise fail(CLASSES_ARRAY, "is given without 'train_labels' and 'eval_labels'")
        return None
    if len(present) == 1:
        missing = next(name for name in LABEL_ARRAYS.values() if name not in present)
        raise fail(present[0], f"is given without {missing!r}: give both label arrays or neither")
    counts = {"train": manifest.splits.train, "eval": manifest.splits.eval}
    labels: dict[str, np.ndarray] = {}
    for split, name in LABEL_ARRAYS.items():
        values = arrays[name]
        if values.dtype.kind not in "iu":
            raise fail(name, f"is {values.dtype}, expected integer class indices")
        if values.ndim != 1 or len(values) < counts[split]:
            raise fail(name, f"has shape {values.shape}, expected (N,) with N >= splits.{split} "
                             f"({counts[split]})")
        if values.size and values.min() < 0:
            raise fail(name, f"holds a negative label ({values.min()})")
        labels[split] = values.astype(np.int64)
    top = max((int(v.max()) for v in labels.values() if v.size), default=-1)
    if CLASSES_ARRAY not in arrays.files:
        return tuple(f"class_{i}" for i in range(top + 1)), labels
    names = arrays[CLASSES_ARRAY]
    if names.dtype.kind not in "US" or names.ndim != 1:
        raise fail(CLASSES_ARRAY, f"is {names.dtype} {names.shape}, expected 1-D class names")
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())
    if len(set(classes)) != len(classes):
        raise fail(CLASSES_ARRAY, f"repeats class names: {list(classes)}")
    for split, name in LABEL_ARRAYS.items():
        values = labels[split]
        if values.size and values.max() >= len(classes):
            raise fail(name, f"holds label {values.max()}, outside the {len(classes)} classes "
                             f"of 'classes'")
    return classes, labels


def _open(file: Path, manifest: Manifest, mpath: Path) -> Any:
    if not file.is_file():
        raise data_error(file, "file not found", manifest, mpath)
    try:
        return np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise data_error(file, f"not a readable .npz file ({exc})", manifest, mpath) from None


def npz_classes(manifest: Manifest, manifest_path: Path) -> tuple[str, ...]:
    """The class names of the file's labels; none if it holds no label arrays."""
    file = data_path(manifest, manifest_path)
    with _open(file, manifest, manifest_path) as arrays:
        found = _labels(arrays, file, manifest, manifest_path)
    return found[0] if found is not None else ()


@register_source("npz", needs_path=True, single_file=True, chunked=True, classes=npz_classes)
def npz(manifest: Manifest, manifest_path: Path) -> Iterator[Chunk]:
    """A .npz file holding arrays `train` and `eval` (uint8 NHWC, or floats in [0, 1]) and
    optionally their labels (see the module docstring)."""
    file = data_path(manifest, manifest_path)
    if not file.is_file():
        raise data_error(file, "file not found", manifest, manifest_path)
    if manifest.sha256 is not None:
        actual = sha256_file(file)
        if actual != manifest.sha256:
            problem = f"sha256 is {actual}, the manifest expects {manifest.sha256}"
            raise data_error(file, problem, manifest, manifest_path)
    counts = {"train": manifest.splits.train, "eval": manifest.splits.eval}
    try:
        with np.load(file, allow_pickle=False) as arrays:
            found = _labels(arrays, file, manifest, manifest_path)
            for key, count in counts.items():
                done = 0
                for images in _split(arrays, key, count, file, manifest, manifest_path):
                    labels = None if found is None else found[1][key][done : done + len(images)]
                    done += len(images)
                    yield key, images, labels
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        problem = f"not a readable .npz file ({exc})"
        raise data_error(file, problem, manifest, manifest_path) from None
