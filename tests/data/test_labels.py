"""Tests of class labels: each source's labels, the store's label files and facts, describe()."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data.dataset import Dataset, content_hash, describe, load_dataset
from harness.data.manifest import load_manifest, source_options
from harness.data.sources import skimage_patches as skimage_patches_module
from harness.data.sources.cifar10 import CIFAR10_CLASSES
from harness.data.sources.skimage_patches import crop_boxes
from harness.data.store import (
    FACTS_FILE,
    STORE_FORMAT,
    check_classes,
    labels_hash,
    read_source,
    write_splits,
)
from harness.errors import DataError
from tests.data.helpers import cifar_labels, write_cifar_batch, write_cifar_folder, write_manifest

RES = 8


def _labels_of(dataset: Dataset) -> tuple[list[int], list[int]]:
    assert dataset.train_labels is not None and dataset.eval_labels is not None
    return dataset.train_labels.tolist(), dataset.eval_labels.tolist()


def _assert_unlabeled(dataset: Dataset) -> None:
    assert dataset.train_labels is None and dataset.eval_labels is None
    assert dataset.classes == () and dataset.labels_hash is None and dataset.num_classes == 0


# --------------------------------------------------------------------------- image_folder


def _png(file: Path, color: tuple[int, int, int], size: tuple[int, int] = (12, 10)) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(file)
    return file


def _folder_manifest(folder: Path, train: int, eval_: int, **fields: object) -> Path:
    return write_manifest(folder, source="image_folder", path="imgs", resolution=RES,
                          splits={"train": train, "eval": eval_}, obtain="copy them", **fields)


def test_image_folder_labels_are_top_level_sub_folders(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    names = ["dog/2.png", "cat/0.png", "emu/4.png", "cat/deep/1.png", "dog/3.png", "fox/5.png"]
    for i, rel in enumerate(names):
        _png(root / rel, (10 * i, 0, 0))
    _png(root / ".hidden" / "x.png", (1, 2, 3))  # skipped, as before
    (root / "readme.txt").write_text("not an image: the folder stays labeled")
    (root / "empty").mkdir()  # holds no image: no class
    dataset = load_dataset(_folder_manifest(tmp_path, 4, 2))
    assert dataset.classes == ("cat", "dog", "emu", "fox") and dataset.num_classes == 4
    # Sorted files: cat/0, cat/deep/1, dog/2, dog/3 for train; emu/4, fox/5 for eval.
    assert _labels_of(dataset) == ([0, 0, 1, 1], [2, 3])
    assert [int(im[0, 0, 0]) for im in dataset.train] == [10, 30, 0, 40]  # order unchanged
    assert dataset.train_labels is not None and dataset.train_labels.dtype == np.int64
    assert dataset.labels_hash == labels_hash(dataset.classes, *_labels_of(dataset))


def test_image_folder_with_a_root_image_is_unlabeled(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _png(root / "a" / "0.png", (1, 1, 1))
    _png(root / "b" / "1.png", (2, 2, 2))
    _png(root / "z.png", (3, 3, 3))
    dataset = load_dataset(_folder_manifest(tmp_path, 2, 1))
    _assert_unlabeled(dataset)
    assert [int(im[0, 0, 0]) for im in dataset.train] == [1, 2]


def test_image_folder_eval_path_labels(tmp_path: Path) -> None:
    for i, rel in enumerate(["a/0.png", "b/1.png", "c/2.png"]):
        _png(tmp_path / "imgs" / rel, (i, i, i))
    _png(tmp_path / "val" / "c" / "0.png", (9, 9, 9))
    _png(tmp_path / "val" / "a" / "x" / "1.png", (8, 8, 8))
    dataset = load_dataset(_folder_manifest(tmp_path, 3, 2, options={"eval_path": "val"}))
    assert dataset.classes == ("a", "b", "c")
    assert _labels_of(dataset) == ([0, 1, 2], [0, 2])
    assert [int(im[0, 0, 0]) for im in dataset.eval] == [8, 9]


@pytest.mark.parametrize(("eval_file", "words"), [
    ("zebra/0.png", "class 'zebra'"),
    ("0.png", "no class"),
])
def test_image_folder_eval_image_of_an_unknown_class(tmp_path: Path, eval_file: str,
                                                     words: str) -> None:
    _png(tmp_path / "imgs" / "a" / "0.png", (1, 1, 1))
    _png(tmp_path / "imgs" / "b" / "1.png", (2, 2, 2))
    _png(tmp_path / "val" / "a" / "0.png", (3, 3, 3))
    bad = _png(tmp_path / "val" / eval_file, (4, 4, 4))
    with pytest.raises(DataError) as info:
        load_dataset(_folder_manifest(tmp_path, 2, 2, options={"eval_path": "val"}))
    message = str(info.value)
    assert str(bad) in message and words in message and "['a', 'b']" in message


# --------------------------------------------------------------------------- npz


def _npz(tmp_path: Path, splits: tuple[int, int] = (5, 3), **arrays: object) -> Path:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", train=rng.integers(0, 256, (6, RES, RES, 3), dtype=np.uint8),
             eval=rng.integers(0, 256, (4, RES, RES, 3), dtype=np.uint8), **arrays)
    return write_manifest(tmp_path, source="npz", path="d.npz", resolution=RES,
                          splits={"train": splits[0], "eval": splits[1]})


def test_npz_without_labels_is_unlabeled(tmp_path: Path) -> None:
    _assert_unlabeled(load_dataset(_npz(tmp_path)))


def test_npz_labels_and_classes(tmp_path: Path) -> None:
    train_labels = np.array([2, 0, 1, 1, 0, 2], np.uint8)  # one more than splits.train
    eval_labels = np.array([1, 2, 0, 0])
    classes = np.array(["ant", "bee", "cow"])
    dataset = load_dataset(_npz(tmp_path, train_labels=train_labels, eval_labels=eval_labels,
                                classes=classes))
    assert dataset.classes == ("ant", "bee", "cow")
    assert _labels_of(dataset) == ([2, 0, 1, 1, 0], [1, 2, 0])


def test_npz_default_class_names(tmp_path: Path) -> None:
    dataset = load_dataset(_npz(tmp_path, train_labels=np.array([0, 3, 0, 0, 0, 0]),
                                eval_labels=np.zeros(4, np.int32)))
    assert dataset.classes == ("class_0", "class_1", "class_2", "class_3")
    assert _labels_of(dataset) == ([0, 3, 0, 0, 0], [0, 0, 0])


GOOD_TRAIN, GOOD_EVAL = np.zeros(6, np.int64), np.zeros(4, np.int64)


@pytest.mark.parametrize(("arrays", "array", "words"), [
    ({"train_labels": GOOD_TRAIN}, "train_labels", "without 'eval_labels'"),
    ({"eval_labels": GOOD_EVAL}, "eval_labels", "without 'train_labels'"),
    ({"train_labels": GOOD_TRAIN.astype(float), "eval_labels": GOOD_EVAL}, "train_labels",
     "float64"),
    ({"train_labels": GOOD_TRAIN, "eval_labels": GOOD_EVAL[:2]}, "eval_labels", r"\(2,\)"),
    ({"train_labels": GOOD_TRAIN.reshape(2, 3), "eval_labels": GOOD_EVAL}, "train_labels",
     r"\(2, 3\)"),
    ({"train_labels": GOOD_TRAIN - 1, "eval_labels": GOOD_EVAL}, "train_labels", "negative"),
    ({"train_labels": GOOD_TRAIN, "eval_labels": GOOD_EVAL + 2, "classes": np.array(["a", "b"])},
     "eval_labels", "outside the 2 classes"),
    ({"train_labels": GOOD_TRAIN, "eval_labels": GOOD_EVAL, "classes": np.array([1, 2])},
     "classes", "class names"),
    ({"train_labels": GOOD_TRAIN, "eval_labels": GOOD_EVAL, "classes": np.array(["a", "a"])},
     "classes", "repeats"),
    ({"classes": np.array(["a"])}, "classes", "without"),
])
def test_npz_bad_labels_name_the_file_and_array(tmp_path: Path, arrays: dict, array: str,
                                                words: str) -> None:
    with pytest.raises(DataError, match=words) as info:
        load_dataset(_npz(tmp_path, **arrays))
    assert str(tmp_path / "d.npz") in str(info.value) and f"array {array!r}" in str(info.value)


def test_npz_labels_move_the_labels_hash_not_the_content_hash(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    first = load_dataset(_npz(tmp_path / "a", train_labels=GOOD_TRAIN, eval_labels=GOOD_EVAL))
    moved = GOOD_TRAIN.copy()
    moved[4] = 1
    second = load_dataset(_npz(tmp_path / "b", train_labels=moved, eval_labels=GOOD_EVAL))
    renamed = load_dataset(_npz(tmp_path / "c", train_labels=GOOD_TRAIN, eval_labels=GOOD_EVAL,
                                classes=np.array(["only"])))
    unlabeled = load_dataset(_npz(tmp_path))
    assert first.content_hash == second.content_hash == renamed.content_hash
    assert first.content_hash == unlabeled.content_hash
    assert first.content_hash == content_hash(first.train, first.eval)
    hashes = {first.labels_hash, second.labels_hash, renamed.labels_hash}
    assert None not in hashes and len(hashes) == 3


# --------------------------------------------------------------------------- cifar10_python


def _cifar_manifest(tmp_path: Path, train: int = 18, eval_: int = 3) -> Path:
    return write_manifest(tmp_path, source="cifar10_python", path="cifar", resolution=RES,
                          splits={"train": train, "eval": eval_}, obtain="download it")


def test_cifar_labels(tmp_path: Path) -> None:
    write_cifar_folder(tmp_path / "cifar", 4)
    dataset = load_dataset(_cifar_manifest(tmp_path))
    assert dataset.classes == CIFAR10_CLASSES and dataset.num_classes == 10
    assert dataset.classes[:3] == ("airplane", "automobile", "bird")
    train = [label for batch in range(5) for label in cifar_labels(4, batch)][:18]
    assert _labels_of(dataset) == (train, cifar_labels(3, 5))


@pytest.mark.parametrize("labels", [
    [0, 1, 2],  # too short
    [0, 1, 2, 10],  # 10 is no class
    [0, 1, 2, -1],
    [0.0, 1.0, 2.0, 3.0],
    [0, 1, True, 3],
    np.zeros((4, 1), np.int64),
    "0123",
    None,  # no b'labels' at all
])
def test_cifar_bad_labels_name_the_file(tmp_path: Path, labels: object) -> None:
    write_cifar_folder(tmp_path / "cifar", 4)
    bad = tmp_path / "cifar" / "data_batch_2"
    images = np.zeros((4, 32, 32, 3), np.uint8)
    if labels is None:
        rows = images.reshape(4, 3072)
        with bad.open("wb") as fh:
            pickle.dump({b"data": rows, b"filenames": []}, fh, protocol=2)
    else:
        write_cifar_batch(bad, images, labels=labels)
    with pytest.raises(DataError, match="labels") as info:
        load_dataset(_cifar_manifest(tmp_path))
    assert str(bad) in str(info.value)


# --------------------------------------------------------------------------- skimage_patches

# Content hashes of `split: regions` manifests as produced before labels existed.
REGIONS_HASHES = [
    ({"resolution": 16, "splits": {"train": 40, "eval": 12}},
     "7f0c4033ff1fc9a28d3a9a03932c672ae7a716831be3ccd1f5c876086520020a"),
    ({"resolution": 24, "seed": 3, "splits": {"train": 30, "eval": 9},
      "options": {"images": ["coffee", "rocket", "chelsea"], "grid": 4}},
     "b2929460e4b35d73e45892c5e279f9dec125910ef0e857ced52f7c3f9d995e19"),
]


@pytest.mark.parametrize(("fields", "expected"), REGIONS_HASHES)
def test_skimage_regions_pixels_unchanged_and_labels_are_photos(
        tmp_path: Path, fields: dict, expected: str) -> None:
    path = write_manifest(tmp_path, source="skimage_patches", **fields)
    dataset = load_dataset(path)
    assert dataset.content_hash == expected
    manifest = load_manifest(path)
    options = source_options(manifest, path)
    assert dataset.classes == tuple(options.images)
    crops = crop_boxes(options, manifest.seed, len(dataset.train), len(dataset.eval))
    photos = [options.images.index(c.photo) for c in crops]
    assert _labels_of(dataset) == (photos[:len(dataset.train)], photos[len(dataset.train):])
    (train, eval_), labels = read_source(manifest, path.resolve())
    np.testing.assert_array_equal(train, dataset.train)
    np.testing.assert_array_equal(eval_, dataset.eval)
    assert labels is not None
    assert (labels[0].tolist(), labels[1].tolist()) == _labels_of(dataset)


@pytest.mark.parametrize(("options", "classes"), [
    ({"images": ["rocket", "astronaut", "coffee"]}, ("rocket", "astronaut", "coffee")),
    ({"split": "photographs", "train_images": ["coffee", "astronaut"],
      "eval_images": ["chelsea"]}, ("coffee", "astronaut", "chelsea")),
])
def test_skimage_labels_match_the_pixels_of_the_crops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict,
        classes: tuple[str, ...]) -> None:
    # Every photograph one flat gray, a different one each: a crop's gray names its photograph.
    real_photo = skimage_patches_module._photo
    grays = {name: (i + 1) / 8 for i, name in enumerate(skimage_patches_module.SKIMAGE_PHOTOS)}

    def fake_photo(name: str) -> np.ndarray:
        return np.full_like(real_photo(name), grays[name])

    skimage_patches_module._cell_level.cache_clear()
    monkeypatch.setattr(skimage_patches_module, "_photo", fake_photo)
    try:
        path = write_manifest(tmp_path, source="skimage_patches", resolution=RES,
                              splits={"train": 24, "eval": 8}, options=options)
        dataset = load_dataset(path, tmp_path / "cache")
    finally:
        skimage_patches_module._cell_level.cache_clear()
    assert dataset.classes == classes
    for images, labels in ((dataset.train, dataset.train_labels),
                           (dataset.eval, dataset.eval_labels)):
        assert labels is not None and len(labels) == len(images)
        expected = [round(grays[classes[label]] * 255) for label in labels]
        assert [int(im[0, 0, 0]) for im in images] == expected


def test_skimage_photographs_classes_put_train_photos_first(tmp_path: Path) -> None:
    options = {"split": "photographs", "train_images": ["coffee", "coffee", "rocket"],
               "eval_images": ["chelsea", "motorcycle"]}
    path = write_manifest(tmp_path, source="skimage_patches", resolution=RES,
                          splits={"train": 12, "eval": 6}, options=options)
    dataset = load_dataset(path)
    assert dataset.classes == ("coffee", "rocket", "chelsea", "motorcycle")
    train, eval_ = _labels_of(dataset)
    assert set(train) <= {0, 1} and set(eval_) <= {2, 3}


def test_synthetic_shapes_is_unlabeled(tmp_path: Path) -> None:
    _assert_unlabeled(load_dataset(write_manifest(tmp_path)))


# --------------------------------------------------------------------------- the store


def test_the_store_round_trips_labels(tmp_path: Path) -> None:
    path = _npz(tmp_path, train_labels=np.array([1, 0, 1, 1, 0, 0]),
                eval_labels=np.array([0, 1, 1, 0]), classes=np.array(["no", "yes"]))
    dataset = load_dataset(path, tmp_path / "cache")
    assert dataset.store is not None
    assert {"train_labels.npy", "eval_labels.npy"} <= {p.name for p in dataset.store.iterdir()}
    for labels in (dataset.train_labels, dataset.eval_labels):
        assert isinstance(labels, np.memmap) and not labels.flags.writeable
        assert labels.dtype == np.int64 and labels.ndim == 1
    facts = json.loads((dataset.store / FACTS_FILE).read_text())
    assert facts["format"] == STORE_FORMAT == 2
    assert facts["classes"] == ["no", "yes"] and facts["labels_hash"] == dataset.labels_hash
    assert dataset.labels_hash == labels_hash(("no", "yes"), [1, 0, 1, 1, 0], [0, 1, 1])
    assert dataset.labels_hash != labels_hash(("no", "yes"), [1, 0, 1, 1, 0], [0, 1, 0])
    assert dataset.labels_hash != labels_hash(("n", "yes"), [1, 0, 1, 1, 0], [0, 1, 1])
    assert dataset.content_hash == content_hash(dataset.train, dataset.eval)


def test_an_unlabeled_entry_has_no_label_files(tmp_path: Path) -> None:
    dataset = load_dataset(write_manifest(tmp_path), tmp_path / "cache")
    assert dataset.store is not None
    assert not list(dataset.store.glob("*_labels.npy"))
    facts = json.loads((dataset.store / FACTS_FILE).read_text())
    assert "classes" not in facts and "labels_hash" not in facts


def _images(count: int) -> np.ndarray:
    return np.zeros((count, 2, 2, 3), np.uint8)


SHAPES = {"train": (3, 2, 2, 3), "eval": (1, 2, 2, 3)}


def test_write_splits_writes_labels(tmp_path: Path) -> None:
    chunks = [("train", _images(2), np.array([4, 0])), ("train", _images(1), np.array([2])),
              ("eval", _images(1), np.array([1], np.uint8))]
    written = write_splits(chunks, tmp_path, SHAPES, "m")
    assert written.content_hash == content_hash(_images(3), _images(1))
    assert written.labels is not None
    assert [v.tolist() for v in written.labels] == [[4, 0, 2], [1]]
    assert np.load(tmp_path / "train_labels.npy").tolist() == [4, 0, 2]
    assert np.load(tmp_path / "eval_labels.npy").dtype == np.int64


@pytest.mark.parametrize(("chunks", "words"), [
    ([("train", _images(2), np.array([0, 1])), ("train", _images(1), None)],
     "train images without labels after labeled ones"),
    ([("train", _images(3), np.array([0, 1, 2])), ("eval", _images(1), None)],
     "eval images without labels"),
    ([("train", _images(3), None), ("eval", _images(1), np.array([0]))],
     "labeled eval images after unlabeled ones"),
    ([("train", _images(3), np.array([0, 1]))], r"labels as int64 \(2,\)"),
    ([("train", _images(3), np.array([0.0, 1.0, 2.0]))], "float64"),
    ([("train", _images(3), np.array([0, -1, 2]))], "negative"),
])
def test_write_splits_rejects_bad_labels(tmp_path: Path, chunks: list, words: str) -> None:
    with pytest.raises(DataError, match=words) as info:
        write_splits(chunks, tmp_path, SHAPES, "m.yaml: source 'x'")
    assert str(info.value).startswith("m.yaml: source 'x' ")


LABELS = (np.array([0, 2]), np.array([1]))


@pytest.mark.parametrize(("classes", "labels", "words"), [
    (("a", "b", "c"), None, "3 classes but yielded no labels"),
    ((), LABELS, "names no classes"),
    (("a", "b"), LABELS, "label 2 but has only 2 classes"),
    (("a", "b", "a"), LABELS, "not distinct"),
])
def test_check_classes(classes: tuple[str, ...], labels: tuple | None, words: str) -> None:
    with pytest.raises(DataError, match=words):
        check_classes(classes, labels, "m")
    check_classes(("a", "b", "c"), LABELS, "m")
    check_classes((), None, "m")


# --------------------------------------------------------------------------- describe


def _dataset(classes: tuple[str, ...], train: list[int] | None, eval_: list[int] | None
             ) -> Dataset:
    def split(labels: list[int] | None) -> np.ndarray:
        return _images(len(labels or [0]))

    return Dataset("d", split(train), split(eval_), 2, "0" * 64, Path("m.yaml"), "npz",
                   train_labels=None if train is None else np.array(train),
                   eval_labels=None if eval_ is None else np.array(eval_), classes=classes)


def test_describe_prints_class_counts() -> None:
    text = describe(_dataset(("cat", "dog", "emu"), [0, 2, 2, 0, 2], [1, 1]))
    assert "classes   3: cat, dog, emu" in text.splitlines()
    assert "counts    train 2 0 3 / eval 0 2 0" in text.splitlines()


def test_describe_summarizes_many_classes() -> None:
    classes = tuple(f"c{i}" for i in range(20))
    train = [i % 20 for i in range(46)]  # 3 of c0..c5, 2 of the others
    text = describe(_dataset(classes, train, list(range(20))))
    lines = text.splitlines()
    classes_line = next(line for line in lines if line.startswith("classes"))
    assert classes_line.startswith("classes   20: c0, c1, ") and "(8 more)" in classes_line
    counts = next(line for line in lines if line.startswith("counts"))
    assert "train min 2 max 3 mean 2.3 (first 3 3 3 3 3 3 2 2 2 2 2 2 ...)" in counts
    assert "eval min 1 max 1 mean 1.0" in counts


def test_describe_unlabeled_and_default_fields() -> None:
    dataset = Dataset("d", _images(2), _images(1), 2, "0" * 64, Path("m.yaml"))
    _assert_unlabeled(dataset)
    assert "classes   none (unlabeled source)" in describe(dataset).splitlines()
