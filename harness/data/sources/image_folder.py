"""Source `image_folder`: PNG/JPEG files under a local folder.

A chunked source: the files are decoded and resized a chunk at a time (harness.data.images
CHUNK_BYTES), so a folder larger than memory goes to the dataset store without ever being whole
in memory. Its stamp covers every image file's path, size and mtime, nested folders included.

Labels: the class of an image is its top-level sub-folder (`path/<class>/.../x.png`); the
classes are the sorted names of the train folder's top-level sub-folders that hold images. A
train folder with an image directly in it is unlabeled. With `eval_path`, every eval image
must lie in a sub-folder named after a train class.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.images import IMAGE_SUFFIXES, chunk_length
from harness.data.manifest import (
    Chunk,
    Manifest,
    StrictModel,
    data_error,
    data_path,
    files_stamp,
    register_source,
    resolve_path,
    source_options,
    take,
)


class ImageFolderOptions(StrictModel):
    """Options of `image_folder`."""

    eval_path: str | None = None


def _image_files(folder: Path, manifest: Manifest, mpath: Path) -> list[Path]:
    if not folder.is_dir():
        raise data_error(folder, "image folder not found", manifest, mpath)
    files = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def _read_image(file: Path, res: int, manifest: Manifest, mpath: Path) -> np.ndarray:
    try:
        with Image.open(file) as image:
            image = image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise data_error(file, f"unreadable image ({exc})", manifest, mpath) from None
    w, h = image.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    image = image.crop((left, top, left + s, top + s))
    # Pillow rather than skimage here: folders hold up to ~10^5 large images, and Pillow's
    # anti-aliased bicubic is ~30x faster than skimage.transform.resize at 1024 -> 256.
    if s != res:
        image = image.resize((res, res), Image.Resampling.BICUBIC)
    return np.asarray(image, np.uint8)


def _read_files(files: list[Path], manifest: Manifest, mpath: Path) -> Iterator[np.ndarray]:
    """The images of `files`, in order, a chunk of at most CHUNK_BYTES at a time."""
    res = manifest.resolution
    step = chunk_length(res)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for start in range(0, len(files), step):
            part = files[start : start + step]
            out = np.empty((len(part), res, res, 3), np.uint8)
            for i, image in enumerate(pool.map(lambda f: _read_image(f, res, manifest, mpath),
                                               part)):
                out[i] = image
            yield out


def _folders(manifest: Manifest, mpath: Path) -> list[Path]:
    """The train folder, then the eval folder when `eval_path` names one."""
    opts: ImageFolderOptions = source_options(manifest, mpath)
    folders = [data_path(manifest, mpath)]
    if opts.eval_path is not None:
        folders.append(resolve_path(opts.eval_path, mpath))
    return folders


def _first_files(folder: Path, count: int, key: str, manifest: Manifest, mpath: Path
                 ) -> list[Path]:
    files = _image_files(folder, manifest, mpath)
    return take(files, count, key, folder, manifest, mpath, noun="PNG/JPEG images")


def _split_files(manifest: Manifest, mpath: Path) -> dict[str, tuple[Path, list[Path]]]:
    """The folder and files of each split; a DataError if a folder is missing or holds too
    few."""
    n_train, n_eval = manifest.splits.train, manifest.splits.eval
    folders = _folders(manifest, mpath)
    if len(folders) == 1:
        both = "splits.train + splits.eval"
        files = _first_files(folders[0], n_train + n_eval, both, manifest, mpath)
        return {"train": (folders[0], files[:n_train]), "eval": (folders[0], files[n_train:])}
    return {
        "train": (folders[0], _first_files(folders[0], n_train, "splits.train", manifest, mpath)),
        "eval": (folders[1], _first_files(folders[1], n_eval, "splits.eval", manifest, mpath)),
    }


def _class_of(file: Path, folder: Path) -> str | None:
    """The top-level sub-folder of `folder` that holds `file`; None if it lies in `folder`."""
    parts = file.relative_to(folder).parts
    return parts[0] if len(parts) > 1 else None


def image_folder_classes(manifest: Manifest, manifest_path: Path) -> tuple[str, ...]:
    """The sorted top-level sub-folders of the train folder that hold images; none if an image
    lies in the folder itself."""
    folder = _folders(manifest, manifest_path)[0]
    names = {_class_of(file, folder) for file in _image_files(folder, manifest, manifest_path)}
    return () if None in names else tuple(sorted(n for n in names if n is not None))


def _labels(folder: Path, files: list[Path], classes: tuple[str, ...], manifest: Manifest,
            mpath: Path) -> np.ndarray:
    """The class index of each file; a DataError naming a file whose class is not in
    `classes` (an eval image of a class train lacks)."""
    index = {name: i for i, name in enumerate(classes)}
    labels = np.empty(len(files), np.int64)
    for i, file in enumerate(files):
        name = _class_of(file, folder)
        if name not in index:
            what = f"class {name!r}" if name is not None else "no class (not in a sub-folder)"
            problem = f"eval image of {what}, which is not a train class {list(classes)}"
            raise data_error(file, problem, manifest, mpath)
        labels[i] = index[name]
    return labels


def image_folder_stamp(manifest: Manifest, manifest_path: Path) -> str:
    """`files_stamp` over the image files of the folders the manifest reads."""
    return "".join(
        files_stamp(folder, _image_files(folder, manifest, manifest_path))
        for folder in _folders(manifest, manifest_path)
    )


@register_source(
    "image_folder",
    options=ImageFolderOptions,
    needs_path=True,
    chunked=True,
    stamp=image_folder_stamp,
    classes=image_folder_classes,
)
def image_folder(manifest: Manifest, manifest_path: Path) -> Iterator[Chunk]:
    """PNG/JPEG files under a folder (recursive, sorted), center-cropped and resized; labeled
    by their top-level sub-folder (see the module docstring)."""
    split_files = _split_files(manifest, manifest_path)
    classes = image_folder_classes(manifest, manifest_path)
    labels = {
        key: _labels(folder, files, classes, manifest, manifest_path) if classes else None
        for key, (folder, files) in split_files.items()
    }
    for key, (_, files) in split_files.items():
        done = 0
        for images in _read_files(files, manifest, manifest_path):
            split_labels = labels[key]
            part = None if split_labels is None else split_labels[done : done + len(images)]
            done += len(images)
            yield key, images, part
