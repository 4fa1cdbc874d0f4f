"""Tests of harness.data.store: the memory-mapped dataset store, its key and its writer."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cache import ArtifactCache
from harness.data import dataset as dataset_module
from harness.data import store as store_module
from harness.data.dataset import content_hash, load_dataset
from harness.data.images import as_uint8, center_crop_resize
from harness.data.manifest import Chunk, load_manifest, source_options
from harness.data.sources import image_folder as image_folder_module
from harness.data.sources.image_folder import _read_image
from harness.data.sources.skimage_patches import crop_boxes
from harness.data.store import (
    FACTS_FILE,
    STORE_KIND,
    labels_hash,
    open_store,
    read_source,
    read_splits,
    store_key,
    write_splits,
)
from harness.data.tensors import to_model_range
from harness.errors import DataError
from tests.data.helpers import (
    cifar_labels,
    open_store_in_a_process,
    write_cifar_folder,
    write_manifest,
    write_noise_folder,
)

RES = 16


# Each of these returns a manifest, its images (train, then eval) as the source computed them
# in memory before the store existed, and their labels (train, then eval) or None.
SourceCase = tuple[Path, np.ndarray, np.ndarray | None]


def _folder_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SourceCase:
    """A nested folder of 30 noise PNGs read 7 at a time, in classes part0..part2."""
    files = write_noise_folder(tmp_path / "imgs", 30)
    monkeypatch.setattr(image_folder_module, "chunk_length", lambda side: 7)
    manifest = write_manifest(tmp_path, source="image_folder", path="imgs", resolution=RES,
                              splits={"train": 20, "eval": 10})
    mpath = manifest.resolve()
    expected = np.stack([_read_image(f, RES, load_manifest(mpath), mpath) for f in files])
    labels = np.array([int(f.relative_to(tmp_path / "imgs").parts[0][-1]) for f in files])
    return manifest, expected, labels


def _npz_dataset(tmp_path: Path, compressed: bool) -> SourceCase:
    """Uint8 train and float eval arrays and their labels, more than one resize chunk of each."""
    rng = np.random.default_rng(2)
    train = rng.integers(0, 256, (1100, 20, 24, 3), dtype=np.uint8)
    eval_ = rng.random((1030, 20, 24, 3))
    labels = {"train_labels": rng.integers(0, 7, 1100), "eval_labels": rng.integers(0, 7, 1030)}
    (np.savez_compressed if compressed else np.savez)(tmp_path / "d.npz", train=train, eval=eval_,
                                                      **labels)
    manifest = write_manifest(tmp_path, source="npz", path="d.npz", resolution=RES,
                              splits={"train": 1050, "eval": 1030})
    expected = np.concatenate([center_crop_resize(train[:1050], RES),
                               center_crop_resize(as_uint8(eval_), RES)])
    return manifest, expected, np.concatenate([labels["train_labels"][:1050],
                                               labels["eval_labels"]])


def _cifar_dataset(tmp_path: Path) -> SourceCase:
    """Five train batches of 300 images: the resize chunks straddle the batch files."""
    batches = write_cifar_folder(tmp_path / "cifar", 300)
    manifest = write_manifest(tmp_path, source="cifar10_python", path="cifar", resolution=RES,
                              splits={"train": 1400, "eval": 200})
    expected = np.concatenate([center_crop_resize(np.concatenate(batches[:5])[:1400], RES),
                               center_crop_resize(batches[5][:200], RES)])
    train_labels = [label for batch in range(5) for label in cifar_labels(300, batch)][:1400]
    return manifest, expected, np.array(train_labels + cifar_labels(200, 5))


def _skimage_dataset(tmp_path: Path) -> SourceCase:
    manifest = write_manifest(tmp_path, source="skimage_patches", resolution=RES,
                              splits={"train": 40, "eval": 12})
    train, eval_ = read_splits(load_manifest(manifest), manifest.resolve())
    options = source_options(load_manifest(manifest), manifest)
    photos = [options.images.index(c.photo) for c in crop_boxes(options, 0, 40, 12)]
    return manifest, np.concatenate([train, eval_]), np.array(photos)


def _shapes_dataset(tmp_path: Path) -> SourceCase:
    manifest = write_manifest(tmp_path, seed=4)
    train, eval_ = read_splits(load_manifest(manifest), manifest.resolve())
    return manifest, np.concatenate([train, eval_]), None


@pytest.fixture(params=["image_folder", "npz_stored", "npz_compressed", "cifar10_python",
                        "skimage_patches", "synthetic_shapes"])
def source_dataset(request: pytest.FixtureRequest, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> SourceCase:
    """A small manifest of each kind of source, its images and its labels (see SourceCase)."""
    name = request.param
    if name == "image_folder":
        return _folder_dataset(tmp_path, monkeypatch)
    if name.startswith("npz"):
        return _npz_dataset(tmp_path, compressed=name == "npz_compressed")
    if name == "synthetic_shapes":
        return _shapes_dataset(tmp_path)
    return _cifar_dataset(tmp_path) if name == "cifar10_python" else _skimage_dataset(tmp_path)


def test_the_store_maps_the_source_labels(source_dataset: SourceCase) -> None:
    manifest, _, labels = source_dataset
    dataset = load_dataset(manifest)
    n_train = len(dataset.train)
    if labels is None:
        assert dataset.train_labels is None and dataset.eval_labels is None
        assert dataset.classes == () and dataset.labels_hash is None
        assert read_source(load_manifest(manifest), manifest.resolve())[1] is None
        return
    assert dataset.train_labels is not None and dataset.eval_labels is not None
    assert len(dataset.train_labels) == n_train and len(dataset.eval_labels) == len(dataset.eval)
    np.testing.assert_array_equal(dataset.train_labels, labels[:n_train])
    np.testing.assert_array_equal(dataset.eval_labels, labels[n_train:])
    assert dataset.num_classes > int(labels.max())
    assert dataset.labels_hash == labels_hash(dataset.classes, labels[:n_train],
                                              labels[n_train:])
    in_memory = read_source(load_manifest(manifest), manifest.resolve())[1]
    assert in_memory is not None
    np.testing.assert_array_equal(np.concatenate(in_memory), labels)


def test_the_store_maps_the_source_pixels(source_dataset: SourceCase) -> None:
    manifest, expected, _ = source_dataset
    dataset = load_dataset(manifest)
    n_train = len(dataset.train)
    assert isinstance(dataset.train, np.memmap) and isinstance(dataset.eval, np.memmap)
    assert not dataset.train.flags.writeable and not dataset.eval.flags.writeable
    np.testing.assert_array_equal(dataset.train, expected[:n_train])
    np.testing.assert_array_equal(dataset.eval, expected[n_train:])
    assert dataset.content_hash == content_hash(expected[:n_train], expected[n_train:])
    in_memory = read_splits(load_manifest(manifest), manifest.resolve())
    np.testing.assert_array_equal(in_memory[0], expected[:n_train])
    np.testing.assert_array_equal(in_memory[1], expected[n_train:])


def test_training_batches_drawn_from_the_map_equal_in_memory_ones(tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, expected, _ = _folder_dataset(tmp_path, monkeypatch)
    train = load_dataset(manifest).train
    memory = expected[:len(train)].copy()
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = rng.integers(0, len(train), 8)
        assert torch.equal(to_model_range(train[idx]), to_model_range(memory[idx]))
    for start in range(0, len(train), 6):
        assert torch.equal(to_model_range(train[start:start + 6]),
                           to_model_range(memory[start:start + 6]))


def test_layout_of_an_entry(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, seed=5)
    dataset = load_dataset(manifest, cache_dir=tmp_path / "cache")
    key = store_key(load_manifest(manifest), manifest.resolve())
    assert dataset.store == (tmp_path / "cache" / STORE_KIND / key).resolve()
    assert sorted(p.name for p in dataset.store.iterdir()) == [
        FACTS_FILE, "entry.json", "eval.npy", "train.npy"]
    facts = json.loads((dataset.store / FACTS_FILE).read_text())
    assert facts["content_hash"] == dataset.content_hash
    assert facts["shapes"] == {"train": [8, 16, 16, 3], "eval": [4, 16, 16, 3]}
    assert facts["source"] == "synthetic_shapes" and facts["key"] == key
    sizes = json.loads((dataset.store / "entry.json").read_text())["sizes"]
    assert sizes["train.npy"] == (dataset.store / "train.npy").stat().st_size


def test_a_second_load_builds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = write_manifest(tmp_path, seed=6)
    first = load_dataset(manifest, tmp_path / "cache")
    assert load_dataset(manifest, tmp_path / "cache") is first  # not even opened again
    parsed, mpath = load_manifest(manifest), manifest.resolve()
    cache = ArtifactCache(tmp_path / "cache")
    assert not open_store(parsed, mpath, store_key(parsed, mpath), cache).built

    def no_build(*args: object) -> str:
        raise AssertionError("the store was written again")

    dataset_module._load_cached.cache_clear()  # as a fresh process would
    monkeypatch.setattr(store_module, "write_splits", no_build)
    again = load_dataset(manifest, tmp_path / "cache")
    assert again is not first and again.content_hash == first.content_hash
    np.testing.assert_array_equal(again.train, first.train)


def test_an_edited_nested_image_rebuilds(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, _, _ = _folder_dataset(tmp_path, monkeypatch)
    first = load_dataset(manifest)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    assert load_dataset(manifest) is first
    nested = tmp_path / "imgs" / "part1" / "odd" / "001.png"
    assert nested.is_file()
    before = nested.stat()
    write_noise_folder(tmp_path / "elsewhere", 2, seed=9)[1].replace(nested)
    os.utime(nested, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    again = load_dataset(manifest)
    assert again.store != first.store and again.content_hash != first.content_hash
    files = sorted((tmp_path / "imgs").rglob("*.png"),
                   key=lambda p: p.relative_to(tmp_path / "imgs").as_posix())
    position = files.index(nested)
    changed = [i for i in range(len(again.train))
               if not np.array_equal(again.train[i], first.train[i])]
    assert changed == [position]


def test_a_truncated_store_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    manifest = write_manifest(tmp_path, seed=7)
    first = load_dataset(manifest, tmp_path / "cache")
    assert first.store is not None
    expected = np.array(first.train)
    train_file = first.store / "train.npy"
    del first
    dataset_module._load_cached.cache_clear()
    train_file.write_bytes(train_file.read_bytes()[:-10])
    with caplog.at_level(logging.WARNING):
        again = load_dataset(manifest, tmp_path / "cache")
    assert "train.npy is" in caplog.text and "rebuilding" in caplog.text
    np.testing.assert_array_equal(again.train, expected)


def test_concurrent_processes_build_one_store(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, seed=8, splits={"train": 64, "eval": 16})
    job = (str(manifest.resolve()), str(tmp_path / "cache"))
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.map(open_store_in_a_process, [job] * 3)
    assert sorted(built for built, _ in results) == [False, False, True]
    assert len({digest for _, digest in results}) == 1
    assert not list((tmp_path / "cache" / STORE_KIND).glob(".*.tmp"))


# --------------------------------------------------------------------------- write_splits


def _chunks(train: np.ndarray, eval_: np.ndarray) -> list[Chunk]:
    return [("train", train[:3], None), ("train", train[3:3], None), ("train", train[3:], None),
            ("eval", eval_[:1], None), ("eval", eval_[1:], None)]


def test_write_splits_hashes_what_it_writes(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, (7, 4, 4, 3), dtype=np.uint8)
    eval_ = rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    shapes = {"train": train.shape, "eval": eval_.shape}
    written = write_splits(_chunks(train, eval_), tmp_path, shapes, "m.yaml: source 'x'")
    assert written.content_hash == content_hash(train, eval_) and written.labels is None
    np.testing.assert_array_equal(np.load(tmp_path / "train.npy"), train)
    np.testing.assert_array_equal(np.load(tmp_path / "eval.npy"), eval_)
    assert not list(tmp_path.glob("*_labels.npy"))
    empty = write_splits([("train", train, None)], tmp_path, {"train": train.shape,
                                                              "eval": (0, 4, 4, 3)}, "m")
    assert empty.content_hash == content_hash(train, np.empty((0, 4, 4, 3), np.uint8))


def _zeros(split: str, count: int, dtype: type = np.uint8, width: int = 4) -> Chunk:
    return split, np.zeros((count, 4, width, 3), dtype), None


@pytest.mark.parametrize(("chunks", "message"), [
    ([_zeros("train", 3)], r"train as uint8 \(3, 4, 4, 3\), expected uint8 \(4, 4, 4, 3\)"),
    ([_zeros("train", 5)], r"train as uint8 \(5, 4, 4, 3\)"),
    ([_zeros("train", 4, np.float32)], r"train as float32 \(4, 4, 4, 3\)"),
    ([_zeros("train", 4, width=5)], r"train as uint8 \(4, 4, 5, 3\)"),
    ([_zeros("train", 4), _zeros("eval", 1)],
     r"eval as uint8 \(1, 4, 4, 3\), expected uint8 \(0, 4, 4, 3\)"),
    ([_zeros("eval", 0), _zeros("train", 4)], r"train as uint8 \(0, 4, 4, 3\)"),
    ([_zeros("train", 4), _zeros("test", 0)], r"yielded 'test' images after its eval images"),
])
def test_write_splits_names_what_the_source_got_wrong(
        tmp_path: Path, chunks: list, message: str) -> None:
    shapes = {"train": (4, 4, 4, 3), "eval": (0, 4, 4, 3)}
    with pytest.raises(DataError, match=message) as info:
        write_splits(chunks, tmp_path, shapes, "m.yaml: source 'x'")
    assert str(info.value).startswith("m.yaml: source 'x' ")
