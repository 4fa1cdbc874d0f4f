"""What a sweep needs against what is there: a Ray head that answers, and per-trial CPUs and
GPUs within the cluster (or, before Ray starts, this machine). Ray itself would wait forever
for either."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from harness.config import Experiment, ResourcesConfig
from harness.errors import ConfigError


def machine_resources() -> dict[str, float]:
    """CPUs and GPUs a local Ray would see: os.cpu_count(), and the GPUs CUDA_VISIBLE_DEVICES
    names or `nvidia-smi -L` lists (none without the tool)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = len([device for device in visible.split(",") if device.strip()])
    elif shutil.which("nvidia-smi"):
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                timeout=30)
        gpus = sum(line.startswith("GPU ") for line in listed.stdout.splitlines())
    else:
        gpus = 0
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}


def check_resources(resources: ResourcesConfig, available: dict[str, float],
                    where: str, file: str | Path | None = None) -> None:
    """ConfigError naming `resources.<key>` when a trial asks for more than `available`."""
    for key, asked, kind in (("cpus_per_trial", resources.cpus_per_trial, "CPU"),
                             ("gpus_per_trial", resources.gpus_per_trial, "GPU")):
        has = available.get(kind, 0.0)
        if asked > has:
            raise ConfigError(file, f"resources.{key}", f"{asked:g} {kind}s per trial, but "
                              f"{where} has {has:g}")


ADDRESS_WAIT_SECONDS = 10.0


def check_reachable(address: str, key: str) -> None:
    """A bounded wait for the head's port: Ray itself would wait for as long as one lets it."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=ADDRESS_WAIT_SECONDS).close()
    except (OSError, ValueError) as error:
        raise ConfigError(None, key, f"no Ray head answers at {address} within "
                          f"{ADDRESS_WAIT_SECONDS:g} s ({error}); start one with `ray start "
                          "--head` or leave the address out for a local Ray") from None


def check_before_ray(experiment: Experiment, address: str | None) -> None:
    """What a dry run can check without starting Ray: a cluster's head answers, or this
    machine has what a trial asks for (a cluster's resources are checked once Ray is up)."""
    key = "--address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address not in ("auto", "local"):
        check_reachable(address, key)
    elif not address:
        check_resources(experiment.spec.resources, machine_resources(), "this machine",
                        experiment.path)
