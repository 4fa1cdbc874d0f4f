"""Content-addressed artifact cache shared by concurrent trials (file lock + atomic rename).

An entry is a folder `<root>/<kind>/<key>/` holding the files a builder wrote and an
`entry.json` with their sha256 and sizes. The first process to need an entry builds it into a
temporary folder under the lock and renames it into place; everyone else waits on the lock
and then reads it. An entry whose files no longer match their hashes is rebuilt with a
warning, never used.

A lookup hashes every file of the entry (`verify="sha256"`, the default). Entries of many
gigabytes (a dataset store) are looked up with `verify="size"`: each file must exist with the
size it was built with; their sha256 are still recorded, and checked only when asked
(`ArtifactCache.verify(kind, key)`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from filelock import FileLock

log = logging.getLogger(__name__)

ENTRY_FILE = "entry.json"

Verify = Literal["sha256", "size"]  # what a lookup checks of each file of an entry


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    built: bool  # True when this call built the entry, False on a cache hit


def default_cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE_DIR", Path.cwd() / ".harness" / "cache")).resolve()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(entry: Path, verify: Verify = "sha256") -> str | None:
    """None if the entry is complete and intact, else what is wrong with it."""
    meta_path = entry / ENTRY_FILE
    if not meta_path.is_file():
        return "no entry.json"
    try:
        meta = json.loads(meta_path.read_text())
        files, sizes = meta["files"], meta.get("sizes")
    except (ValueError, KeyError) as error:
        return f"unreadable entry.json ({error})"
    for name, expected in files.items():
        path = entry / name
        if not path.is_file():
            return f"{name} is missing"
        if verify == "size" and sizes is not None:  # entries built before sizes: sha256
            if (size := path.stat().st_size) != sizes.get(name):
                return f"{name} is {size} bytes, not the {sizes.get(name)} it was built with"
        elif file_sha256(path) != expected:
            return f"{name} does not match its sha256"
    return None


class ArtifactCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_cache_dir()).resolve()

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def lookup(self, kind: str, key: str, verify: Verify = "sha256") -> Path | None:
        entry = self.path(kind, key)
        return entry if entry.is_dir() and _verify(entry, verify) is None else None

    def verify(self, kind: str, key: str) -> str | None:
        """The full check of an entry (every file against its sha256): None when intact."""
        entry = self.path(kind, key)
        return _verify(entry) if entry.is_dir() else "no such entry"

    def get_or_build(self, kind: str, key: str, build: Callable[[Path], None],
                     verify: Verify = "sha256") -> CacheEntry:
        """Return the entry, building it with `build(tmp_folder)` if no valid one exists;
        `verify` is what an existing entry is checked with (see the module docstring)."""
        entry = self.path(kind, key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(entry) + ".lock"):
            if entry.is_dir():
                problem = _verify(entry, verify)
                if problem is None:
                    return CacheEntry(entry, built=False)
                log.warning("cache entry %s is corrupted (%s); rebuilding it", entry, problem)
                shutil.rmtree(entry)
            # Under the lock no one else builds this entry: a staging folder left here is
            # from a build that was killed.
            for stale in entry.parent.glob(f".{key}.*.tmp"):
                log.warning("removing %s, left by a build that did not finish", stale)
                shutil.rmtree(stale, ignore_errors=True)
            staging = entry.parent / f".{key}.{uuid.uuid4().hex}.tmp"
            staging.mkdir()
            try:
                build(staging)
                written = [p for p in sorted(staging.iterdir()) if p.is_file()]
                meta = {"files": {p.name: file_sha256(p) for p in written},
                        "sizes": {p.name: p.stat().st_size for p in written},
                        "built_at": time.time(), "host": socket.gethostname(), "pid": os.getpid()}
                (staging / ENTRY_FILE).write_text(json.dumps(meta, indent=2))
                os.replace(staging, entry)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return CacheEntry(entry, built=True)
