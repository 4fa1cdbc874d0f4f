"""Tests of harness.data.manifest: manifest validation and the errors it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.data.manifest import get_source, load_manifest, register_source
from harness.errors import ConfigError
from tests.data.helpers import MANIFESTS, write_manifest


@pytest.mark.parametrize("path", sorted(MANIFESTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_manifests_load(path: Path) -> None:
    manifest = load_manifest(path)
    assert manifest.description
    if get_source(manifest.source).needs_path:
        assert manifest.obtain and manifest.path and manifest.path.startswith("$HOME/")


def test_shipped_manifest_set_is_complete() -> None:
    names = {p.stem for p in MANIFESTS.glob("*.yaml")}
    expected = {"skimage_patches", "synthetic_shapes", "cifar10", "celebahq256", "afhq256"}
    assert expected <= names


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"colour": "red"}, "colour"),
        ({"splits": {"train": 8, "eval": 4, "test": 2}}, "splits.test"),
        ({"options": {"bogus": 1}}, "options.bogus"),
    ],
)
def test_unknown_key_names_file_and_key(tmp_path: Path, fields: dict, key: str) -> None:
    path = write_manifest(tmp_path, **fields)
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    assert info.value.key == key
    assert str(path) in str(info.value) and key in str(info.value)
    assert "unknown key" in str(info.value)


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"resolution": "64"}, "resolution"),
        ({"splits": {"train": 1.5, "eval": 4}}, "splits.train"),
        ({"seed": -1}, "seed"),
        ({"options": {"max_shapes": "many"}}, "options.max_shapes"),
        ({"source": "imagenet_magic"}, "source"),
    ],
)
def test_wrong_value_names_key(tmp_path: Path, fields: dict, key: str) -> None:
    path = write_manifest(tmp_path, **fields)
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    assert info.value.key == key
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_missing_required_key(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("name: t\nsource: synthetic_shapes\nsplits: {train: 2, eval: 2}\n")
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    assert info.value.key == "resolution"


def test_missing_and_unparsable_manifest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="manifest not found"):
        load_manifest(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_manifest(bad)
    assert info.value.file == str(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_manifest(bad)


def test_path_and_sha256_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_manifest(write_manifest(tmp_path, source="npz"))
    assert info.value.key == "path"
    with pytest.raises(ConfigError) as info:
        load_manifest(write_manifest(tmp_path, path="x"))  # synthetic reads no file
    assert info.value.key == "path"
    folder_with_hash = write_manifest(tmp_path, source="image_folder", path="imgs", sha256="0" * 64)
    with pytest.raises(ConfigError) as info:
        load_manifest(folder_with_hash)
    assert info.value.key == "sha256"
    with pytest.raises(ConfigError) as info:
        load_manifest(write_manifest(tmp_path, source="npz", path="x.npz", sha256="abc"))
    assert info.value.key == "sha256"


def test_several_problems_in_one_message(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, resolution=0, seed="x")
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    assert str(info.value) == (
        f"{path}: resolution: Input should be greater than or equal to 1; "
        "also seed: Input should be a valid integer (got 'x')"
    )


def test_source_names_are_unique() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_source("npz")(get_source("npz").load)
