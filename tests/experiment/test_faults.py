"""Fault injection with the real parts: a driver killed during stage 1, a worker killed
during a trial, eight trials at once against sqlite and against an `mlflow server`. After each,
nothing is lost, nothing doubled, and no run is left RUNNING.

Run it alone with `pytest tests/experiment/test_faults.py`; every process it kills is one it
started (the driver it launched and that driver's Ray workers).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from tests.experiment.test_scheduling import (
    assert_no_store_errors,
    by_stage,
    start_mlflow_server,
    stop_group,
    store_runs,
)
from tests.helpers import TINY_EXPERIMENT, harness_env, run_harness, write_experiment

pytestmark = pytest.mark.slow


def start_driver(path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", "run", str(path), "--no-progress",
                             *args], cwd=path.parent, env=harness_env(path.parent),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for(condition, driver: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        assert driver.poll() is None, f"the sweep ended before {what}"
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout:.0f} s")


def runs_once_ready(uri: str) -> list:
    """The store's runs once the driver has set the sqlite store up (its experiment exists),
    else none: a client opening the store during the driver's schema migration would race it
    ("table ... already exists")."""
    db = Path(uri.removeprefix("sqlite:///"))
    if not db.is_file():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        try:
            ready = connection.execute("select 1 from experiments where name = 'tiny'").fetchone()
        except sqlite3.OperationalError:  # no table yet
            return []
    return store_runs(uri) if ready else []


def kill_driver(driver: subprocess.Popen) -> None:
    """SIGKILL the driver and the Ray helpers it started (its process group)."""
    helpers = psutil.Process(driver.pid).children(recursive=True)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    for helper in helpers:
        with contextlib.suppress(psutil.NoSuchProcess):
            helper.kill()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(driver.pid, signal.SIGKILL)


def assert_every_trial_finished_once(uri: str, trials: int) -> None:
    runs = store_runs(uri)
    assert not [run for run in runs if run.info.status == "RUNNING"]
    finished = Counter(run.data.tags["config_hash"] for run in by_stage(runs, "trial")
                       if run.info.status == "FINISHED")
    assert len(finished) == trials and set(finished.values()) == {1}, finished


def test_a_driver_killed_during_stage1_resumes_with_nothing_lost_or_doubled(tmp_path: Path
                                                                            ) -> None:
    path = write_experiment(tmp_path, seeds=[0], stage1=TINY_EXPERIMENT["stage1"] | {
        "train_steps": 400})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = start_driver(path)
    try:
        wait_for(lambda: by_stage(runs_once_ready(uri), "stage1"), driver, "stage-1 run")
        time.sleep(1)  # well into training: the staging folder exists
    finally:
        kill_driver(driver)
    [job] = by_stage(store_runs(uri), "stage1")
    assert job.info.status == "RUNNING" and not by_stage(store_runs(uri), "trial")

    result = run_harness(["run", str(path), "--resume", "--no-progress"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_every_trial_finished_once(uri, 2)
    jobs = sorted(run.info.status for run in by_stage(store_runs(uri), "stage1"))
    assert jobs == ["FINISHED", "KILLED"]
    assert not list((tmp_path / ".harness" / "cache").rglob("*.tmp"))  # staging cleaned


def test_a_worker_killed_during_a_trial_fails_that_trial_and_the_sweep_goes_on(
        tmp_path: Path) -> None:
    path = write_experiment(tmp_path, seeds=[0, 1], resources={
        "cpus_per_trial": 1, "max_concurrent_trials": 1}, stage2=TINY_EXPERIMENT["stage2"] | {
        "train_steps": 300})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = start_driver(path)
    try:
        wait_for(lambda: [run for run in by_stage(runs_once_ready(uri), "trial")
                          if run.info.status == "RUNNING"], driver, "running trial")
        workers = [process for process in psutil.Process(driver.pid).children(recursive=True)
                   if process.cmdline()[:1] and
                   process.cmdline()[0].startswith("ray::ImplicitFunc")]
        assert workers, "no Tune worker found"
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
        out, err = driver.communicate(timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 1, out + err
    assert "worker died" in out and "Traceback" not in out + err, out + err
    trials = by_stage(store_runs(uri), "trial")
    assert not [run for run in store_runs(uri) if run.info.status == "RUNNING"]
    failed = [run for run in trials if run.info.status == "FAILED"]
    assert len(failed) == 1 and failed[0].data.tags["error"].startswith("worker died")
    assert by_stage(store_runs(uri), "sweep")[0].info.status == "FAILED"

    result = run_harness(["run", str(path), "--resume", "--no-progress"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_every_trial_finished_once(uri, 4)


def eight_at_once(tmp_path: Path) -> Path:
    return write_experiment(tmp_path, seeds=[0, 1, 2, 3], resources={
        "cpus_per_trial": 0.25, "max_concurrent_trials": 8})


def test_eight_concurrent_trials_into_sqlite(tmp_path: Path) -> None:
    result = run_harness(["run", str(eight_at_once(tmp_path)), "--no-progress"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_store_errors(result.stdout + result.stderr)
    assert_every_trial_finished_once(f"sqlite:///{tmp_path / 'mlflow.db'}", 8)


def test_eight_concurrent_trials_into_an_mlflow_server(tmp_path: Path) -> None:
    server, uri = start_mlflow_server(tmp_path)
    try:
        result = run_harness(["run", str(eight_at_once(tmp_path)), "--no-progress"],
                             cwd=tmp_path, MLFLOW_TRACKING_URI=uri)
        assert result.returncode == 0, result.stdout + result.stderr
        assert_no_store_errors(result.stdout + result.stderr)
        assert_every_trial_finished_once(uri, 8)
    finally:
        stop_group(server)
