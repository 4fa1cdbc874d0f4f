"""A trial's resources against what is there."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import ResourcesConfig
from harness.errors import ConfigError
from harness.experiment.resources import check_resources, machine_resources
from tests.helpers import run_harness, write_experiment


def test_asking_more_than_there_is_names_the_key() -> None:
    check_resources(ResourcesConfig(cpus_per_trial=2), {"CPU": 2.0}, "x")
    with pytest.raises(ConfigError) as caught:
        check_resources(ResourcesConfig(cpus_per_trial=3), {"CPU": 2.0}, "the Ray cluster")
    assert caught.value.key == "resources.cpus_per_trial"
    assert "3 CPUs per trial, but the Ray cluster has 2" in caught.value.message
    with pytest.raises(ConfigError) as caught:
        check_resources(ResourcesConfig(gpus_per_trial=0.5), {"CPU": 2.0}, "x")
    assert caught.value.key == "resources.gpus_per_trial"


def test_machine_resources_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,3")
    assert machine_resources()["GPU"] == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert machine_resources()["GPU"] == 0 and machine_resources()["CPU"] >= 1


def test_the_dry_run_refuses_what_this_machine_cannot_run(tmp_path: Path) -> None:
    path = write_experiment(tmp_path)
    result = run_harness(["run", str(path), "--dry-run", "--set",
                          "resources.cpus_per_trial=100000"], cwd=tmp_path)
    assert result.returncode == 2 and "resources.cpus_per_trial" in result.stderr


def test_the_dry_run_refuses_an_address_where_nothing_answers(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once it is closed
    path = write_experiment(tmp_path)
    result = run_harness(["run", str(path), "--dry-run", "--address", f"127.0.0.1:{port}"],
                         cwd=tmp_path)
    assert result.returncode == 2 and "--address: no Ray head answers" in result.stderr
