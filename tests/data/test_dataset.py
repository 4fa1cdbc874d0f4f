"""Tests of harness.data.dataset and the package: materialized datasets, summaries, imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from harness.data.dataset import content_hash, describe, load_dataset, show
from tests.data.helpers import MANIFESTS, write_manifest
from tests.helpers import REPO


def test_shipped_default_dataset() -> None:
    dataset = load_dataset(MANIFESTS / "skimage_patches.yaml")
    assert dataset.train.shape == (2048, 64, 64, 3)
    assert dataset.eval.shape == (512, 64, 64, 3)
    # Pinned: labels (issue 18) must not move the pixels' hash, which many cache keys hold.
    assert dataset.content_hash == (
        "17aa5d71cf53b8b0d54df9466f4149f2ab794da6648c604b118af4225297354d"
    )
    assert dataset.classes == ("astronaut", "coffee", "rocket", "immunohistochemistry",
                               "hubble_deep_field")
    assert dataset.train_labels is not None and dataset.train_labels.shape == (2048,)
    assert load_dataset(MANIFESTS / "skimage_patches.yaml") is dataset  # cached
    assert not dataset.train.flags.writeable


def test_content_hash_is_stable(tmp_path: Path) -> None:
    # Pinned: a changed hash silently invalidates every cached run that recorded the old one.
    dataset = load_dataset(write_manifest(tmp_path, seed=3))
    assert dataset.content_hash == content_hash(dataset.train, dataset.eval)
    assert dataset.content_hash == (
        "deb422aa66c8ec56b308a4cce2b6cb1ac925e06e66b3727f9e61d97e9341a060"
    )


def test_describe_a_labeled_dataset() -> None:
    text = describe(load_dataset(MANIFESTS / "skimage_patches.yaml"))
    assert ("classes   5: astronaut, coffee, rocket, immunohistochemistry, hubble_deep_field"
            in text.splitlines())
    counts = next(line for line in text.splitlines() if line.startswith("counts    train "))
    train, eval_ = counts.removeprefix("counts    train ").split(" / eval ")
    assert sum(map(int, train.split())) == 2048 and sum(map(int, eval_.split())) == 512
    assert len(train.split()) == len(eval_.split()) == 5


def test_edited_manifest_is_loaded_again(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, seed=1)
    first = load_dataset(path)
    write_manifest(tmp_path, seed=2)
    assert load_dataset(path).content_hash != first.content_hash


def test_describe_and_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = write_manifest(tmp_path, "shapes.yaml", name="tiny_shapes")
    monkeypatch.chdir(tmp_path)
    text = show(manifest)
    assert "tiny_shapes" in text and "synthetic_shapes" in text
    assert "train 8, eval 4" in text and "16x16x3 uint8" in text
    assert "classes   none (unlabeled source)" in text
    store = load_dataset(manifest).store
    assert store is not None and f"store     {store} (" in text
    preview = tmp_path / "shapes_preview.png"
    assert "shapes_preview.png" in text and preview.is_file()
    with Image.open(preview) as image:
        assert image.size == (8 * 18 + 2, 1 * 18 + 2)


def test_import_registers_sources_without_torch() -> None:
    # A dry run imports harness.data but must not pay for (or need) torch.
    code = (
        "import sys\n"
        "from harness.data.manifest import load_manifest\n"
        f"manifest = load_manifest({str(MANIFESTS / 'cifar10.yaml')!r})\n"
        "import harness.data, harness.data.dataset, harness.data.sources\n"
        "print(manifest.source, 'torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["cifar10_python", "False"]
