"""Source `npz`: a local .npz file holding arrays `train` and `eval`.

A chunked source. A member stored uncompressed (`np.savez`) is memory-mapped from the file, so
a split larger than memory is converted and resized a chunk at a time; a compressed member
(`np.savez_compressed`) cannot be mapped and is read whole into memory first.
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


@register_source("npz", needs_path=True, single_file=True, chunked=True)
def npz(manifest: Manifest, manifest_path: Path) -> Iterator[Chunk]:
    """A .npz file holding arrays `train` and `eval` (uint8 NHWC, or floats in [0, 1])."""
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
            for key, count in counts.items():
                for images in _split(arrays, key, count, file, manifest, manifest_path):
                    yield key, images
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        problem = f"not a readable .npz file ({exc})"
        raise data_error(file, problem, manifest, manifest_path) from None
