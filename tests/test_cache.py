from __future__ import annotations

import json
import logging
import multiprocessing
import time
from pathlib import Path

import pytest

from harness.cache import ArtifactCache


def _build_slowly(folder: Path) -> None:
    time.sleep(0.5)
    (folder / "model.pt").write_bytes(b"weights")
    with (folder.parent.parent / "builds.log").open("a") as log:
        log.write("built\n")


def _get(root: str) -> bool:
    return ArtifactCache(Path(root)).get_or_build("stage1", "abc", _build_slowly).built


def test_builds_once_and_then_hits(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    assert cache.lookup("stage1", "abc") is None
    first = cache.get_or_build("stage1", "abc", _build_slowly)
    second = cache.get_or_build("stage1", "abc", _build_slowly)
    assert first.built and not second.built
    assert (second.path / "model.pt").read_bytes() == b"weights"
    assert cache.lookup("stage1", "abc") == first.path


def test_concurrent_processes_build_one_entry_once(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        built = pool.map(_get, [str(tmp_path)] * 3)
    assert sorted(built) == [False, False, True]
    assert (tmp_path / "builds.log").read_text() == "built\n"
    assert not list((tmp_path / "stage1").glob(".*.tmp"))  # no staging folder left behind


def test_corrupted_entry_is_rebuilt_with_a_warning(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    cache = ArtifactCache(tmp_path)
    entry = cache.get_or_build("stage1", "abc", _build_slowly).path
    (entry / "model.pt").write_bytes(b"bit rot")
    assert cache.lookup("stage1", "abc") is None
    with caplog.at_level(logging.WARNING):
        again = cache.get_or_build("stage1", "abc", _build_slowly)
    assert again.built
    assert "does not match its sha256" in caplog.text
    assert (again.path / "model.pt").read_bytes() == b"weights"


def test_a_failing_build_leaves_no_entry(tmp_path: Path) -> None:
    def broken(folder: Path) -> None:
        (folder / "half.pt").write_bytes(b"x")
        raise RuntimeError("out of memory")

    cache = ArtifactCache(tmp_path)
    with pytest.raises(RuntimeError):
        cache.get_or_build("stage1", "abc", broken)
    assert cache.lookup("stage1", "abc") is None
    assert sorted(p.name for p in (tmp_path / "stage1").iterdir()) == ["abc.lock"]


def test_a_killed_build_leaves_nothing_behind_after_the_next_build(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    (tmp_path / "model").mkdir()
    left = tmp_path / "model" / ".key.0123abcd.tmp"  # as a SIGKILLed build leaves it
    left.mkdir()
    (left / "weights.pt").write_bytes(b"partial")
    other = tmp_path / "model" / ".other-key.0123abcd.tmp"  # another entry's build: untouched
    other.mkdir()
    cache.get_or_build("model", "key", lambda folder: (folder / "w.bin").write_bytes(b"w"))
    assert not left.exists() and other.exists()
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        ".other-key.0123abcd.tmp", "key", "key.lock"]


def test_size_lookups_check_sizes_and_the_full_check_is_on_request(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    entry = cache.get_or_build("dataset", "abc", _build_slowly, verify="size").path
    meta = json.loads((entry / "entry.json").read_text())
    assert meta["sizes"] == {"model.pt": len(b"weights")}
    (entry / "model.pt").write_bytes(b"WEIGHTS")  # same size: only a hash sees it
    assert cache.lookup("dataset", "abc", verify="size") == entry
    assert not cache.get_or_build("dataset", "abc", _build_slowly, verify="size").built
    assert cache.verify("dataset", "abc") == "model.pt does not match its sha256"
    assert cache.lookup("dataset", "abc") is None  # the default lookup still hashes
    assert cache.verify("dataset", "missing") == "no such entry"


def test_a_size_lookup_rebuilds_a_truncated_entry(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    cache = ArtifactCache(tmp_path)
    entry = cache.get_or_build("dataset", "abc", _build_slowly, verify="size").path
    (entry / "model.pt").write_bytes(b"weigh")
    assert cache.lookup("dataset", "abc", verify="size") is None
    with caplog.at_level(logging.WARNING):
        again = cache.get_or_build("dataset", "abc", _build_slowly, verify="size")
    assert again.built and "model.pt is 5 bytes, not the 7 it was built with" in caplog.text


def test_entries_without_sizes_are_hashed_by_size_lookups(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    entry = cache.get_or_build("dataset", "abc", _build_slowly).path
    meta = json.loads((entry / "entry.json").read_text())
    del meta["sizes"]  # as written before entries recorded sizes
    (entry / "entry.json").write_text(json.dumps(meta))
    (entry / "model.pt").write_bytes(b"WEIGHTS")
    assert cache.lookup("dataset", "abc", verify="size") is None
