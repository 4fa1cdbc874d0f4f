"""End-to-end sweeps with the real parts: local Ray, a Ray head started with `ray start`,
a sqlite store and a real `mlflow server` on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tests.helpers import TINY_EXPERIMENT, harness_env, run_harness, write_experiment

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def store_runs(uri: str, name: str = "tiny") -> list[Run]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def by_stage(runs: list[Run], stage: str) -> list[Run]:
    return [run for run in runs if run.data.tags.get("stage") == stage]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_no_store_errors(output: str) -> None:
    for symptom in ("database is locked", "OperationalError", "duplicate column"):
        assert symptom not in output


def test_sweep_runs_four_trials_two_at_a_time_into_sqlite(tiny_experiment: Path) -> None:
    result = run_harness(["run", str(tiny_experiment), "--progress-every", "0"],
                         cwd=tiny_experiment.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_store_errors(result.stdout + result.stderr)
    assert "harness ui" in result.stdout
    # Each trial's progress lines reach the driver: stage, step / total, images/s, ETA.
    assert re.search(r"fusion=add seed=0  stage2  1/\d+ \(\d+%\)  [\d.e+]+ img/s  ETA ",
                     result.stdout), result.stdout
    assert re.search(r"fusion=concat seed=1  sample  8/8 \(100%\)  .* done in ", result.stdout)

    uri = f"sqlite:///{tiny_experiment.parent / 'mlflow.db'}"
    runs = store_runs(uri)
    [parent] = by_stage(runs, "sweep")
    trials = by_stage(runs, "trial")
    assert parent.info.status == "FINISHED"
    assert len(by_stage(runs, "stage1")) == 1  # four trials share one stage-1 model
    assert sorted(run.data.params["stage2.fusion"] for run in trials) == [
        "add", "add", "concat", "concat"]
    assert sorted(run.info.run_name for run in trials) == [  # the arm, at first sight
        "fusion=add seed=0", "fusion=add seed=1", "fusion=concat seed=0", "fusion=concat seed=1"]
    assert sorted(run.data.tags["swept.stage2.fusion"] for run in trials) == [
        "add", "add", "concat", "concat"]
    assert [run.info.run_name for run in by_stage(runs, "stage1")] == ["stage1 conv_ae f=2"]
    client = MlflowClient(uri)
    for run in trials:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["sweep_id"] == parent.data.tags["sweep_id"]
        assert {"config_hash", "git_commit", "harness_version"} <= set(run.data.tags)
        assert run.data.metrics["sample/num_images"] == 8
        assert run.data.metrics["sample/images_per_second"] > 0
        assert run.data.metrics["stage2/params"] > 0
        assert run.data.metrics["stage1/cache_hit"] == 1.0
        assert run.data.metrics["progress/stage2/images_per_second"] > 0
        assert run.data.tags["runtime.device"] == "cpu"
        assert run.data.tags["runtime.precision"] == "fp32"
        artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
        assert "config.yaml" in artifacts and "images" in artifacts
    # resources.max_concurrent_trials = 2: never more than two trials at once.
    events = sorted([(run.info.start_time, 1) for run in trials] +
                    [(run.info.end_time, -1) for run in trials])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    assert 1 <= peak <= 2


def test_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    # A gDDCM setting the algorithm cannot run (40 whole steps in T = 20) is valid config:
    # the second trial raises at run time, as a cross in the seed's tables.
    path = write_experiment(tmp_path, seeds=[0],
                            stage2=TINY_EXPERIMENT["stage2"] | {"fusion": "add", "T": 20},
                            gddcm={"p": 0.5, "K": 16, "N": {"sweep": [5, 40]},
                                   "final_steps": 2, "batch_size": 16})
    result = run_harness(["run", str(path), "--no-progress"], cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED" in result.stdout and "gddcm.N: N = 40 steps do not fit" in result.stdout

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trials = {run.data.params["gddcm.N"]: run for run in by_stage(store_runs(uri), "trial")}
    assert trials["5"].info.status == "FINISHED"
    failed = trials["40"]
    assert failed.info.status == "FAILED"
    assert "gddcm.N" in failed.data.tags["error"]
    traceback = MlflowClient(uri).download_artifacts(failed.info.run_id, "traceback.txt",
                                                     str(tmp_path))
    assert "ConfigError" in Path(traceback).read_text()
    assert by_stage(store_runs(uri), "sweep")[0].info.status == "FAILED"

    again = run_harness(["run", str(path), "--resume", "--allow-failures", "--no-progress"],
                        cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "FINISHED (earlier)" in again.stdout  # the finished trial was not run again
    assert len(by_stage(store_runs(uri), "trial")) == 3


def test_trials_of_a_failed_stage1_job_fail_without_trying_stage1_again(tmp_path: Path
                                                                       ) -> None:
    # A file where the cache's stage-1 folder goes: the stage-1 job fails at once.
    path = write_experiment(tmp_path, seeds=[0])
    blocker = tmp_path / ".harness" / "cache" / "stage1"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    result = run_harness(["run", str(path), "--no-progress"], cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    [job] = by_stage(store_runs(uri), "stage1")
    assert job.info.status == "FAILED" and "File exists" in job.data.tags["error"]
    trials = by_stage(store_runs(uri), "trial")
    assert len(trials) == 2
    for run in trials:  # failed with the job's error, not their own attempt at stage 1
        assert run.info.status == "FAILED"
        assert "its stage-1 job failed: FileExistsError" in run.data.tags["error"]
        assert not any(key.startswith("stage1/") for key in run.data.metrics)

    blocker.unlink()  # the next attempt tries stage 1 again
    again = run_harness(["run", str(path), "--resume", "--no-progress"], cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    runs = store_runs(uri)
    assert sorted(run.info.status for run in by_stage(runs, "stage1")) == ["FAILED", "FINISHED"]
    assert [run.info.status for run in by_stage(runs, "trial")].count("FINISHED") == 2


def test_killed_driver_resumes_with_one_finished_run_per_trial(tmp_path: Path) -> None:
    # One trial at a time, killed as soon as the first trial run appears: trials reuse their
    # worker and take well under a second each, so waiting for a FINISHED one can be too late.
    path = write_experiment(tmp_path, stage2=TINY_EXPERIMENT["stage2"] | {
                                "fusion": {"sweep": ["add", "concat", "adaptive"]}},
                            seeds=[0, 1], resources={"cpus_per_trial": 1,
                                                     "max_concurrent_trials": 1})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = subprocess.Popen([sys.executable, "-m", "harness", "run", str(path),
                               "--no-progress"], cwd=tmp_path, env=harness_env(tmp_path),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            started = by_stage(store_runs(uri), "trial")
            if started:
                break
            assert driver.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.1)
        assert started, "no trial started in time"
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        # Ray's helper processes outlive a SIGKILLed driver; clean them up.
        time.sleep(1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    assert len([run for run in by_stage(store_runs(uri), "trial")
                if run.info.status == "FINISHED"]) < 6

    result = run_harness(["run", str(path), "--resume", "--no-progress"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    trials = by_stage(store_runs(uri), "trial")
    finished = Counter(run.data.tags["config_hash"] for run in trials
                       if run.info.status == "FINISHED")
    assert len(finished) == 6 and set(finished.values()) == {1}
    assert {run.info.status for run in trials} <= {"FINISHED", "KILLED"}
    assert len(by_stage(store_runs(uri), "sweep")) == 1  # the same sweep was resumed


def test_sweep_logs_to_a_real_mlflow_server(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, seeds=[0])
    server, uri = start_mlflow_server(tmp_path)
    try:
        result = run_harness(["run", str(path), "--no-progress"], cwd=tmp_path,
                             MLFLOW_TRACKING_URI=uri)
        assert result.returncode == 0, result.stdout + result.stderr
        assert uri in result.stdout
        runs = store_runs(uri)
        trials = by_stage(runs, "trial")
        assert len(trials) == 2 and all(run.info.status == "FINISHED" for run in trials)
        artifacts = MlflowClient(uri).list_artifacts(trials[0].info.run_id, "images")
        assert [item.path for item in artifacts] == ["images/samples.png"]
        assert not (tmp_path / "mlflow.db").exists()  # nothing went to the default store
        assert_the_ui_shows_the_arms(uri)
    finally:
        stop_group(server)


def rest(uri: str, endpoint: str, body: dict | None = None) -> dict:
    """One call of MLflow's REST API, as the UI makes it."""
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/{endpoint}", method="POST" if body is not None else "GET",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def assert_the_ui_shows_the_arms(uri: str) -> None:
    """What the MLflow UI reads, through the REST API: a model-training experiment with the
    file's description, runs named by their arm with one tag per swept key, params that are
    the configuration, the dataset as an input, and the report on the sweep run."""
    experiment = rest(uri, "experiments/get-by-name?experiment_name=tiny")["experiment"]
    tags = {tag["key"]: tag["value"] for tag in experiment.get("tags", [])}
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    runs = rest(uri, "runs/search", {"experiment_ids": [experiment["experiment_id"]],
                                     "max_results": 100})["runs"]

    def tags_of(run: dict) -> dict[str, str]:
        return {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}

    trials = [run for run in runs if tags_of(run)["stage"] == "trial"]
    assert sorted(run["info"]["run_name"] for run in trials) == ["fusion=add", "fusion=concat"]
    for run in trials:
        assert tags_of(run)["swept.stage2.fusion"] in ("add", "concat")
        params = {param["key"] for param in run["data"]["params"]}
        assert "stage2.fusion" in params and not [p for p in params if p.startswith("stage1/")]
        [data] = run["inputs"]["dataset_inputs"]
        assert data["dataset"]["name"] == "tiny_shapes"
    # The compare view opens on the first metric that all its runs share, in the order the
    # first lists them: the training loss (logged while it trains) or a score, never
    # bookkeeping such as stage1/cache_hit.
    keys = [[metric["key"] for metric in run["data"]["metrics"]] for run in trials]
    shared = [key for key in keys[0] if all(key in others for others in keys)]
    assert shared[:2] == ["stage2/train_loss", "stage1/l1"], shared
    [sweep] = [run for run in runs if tags_of(run)["stage"] == "sweep"]
    listed = rest(uri, f"artifacts/list?run_id={sweep['info']['run_id']}&path=report")
    assert {"report/index.md", "report/table.md", "report/table.csv"} <= {
        item["path"] for item in listed["files"]}


def test_sweep_joins_a_ray_cluster_started_with_ray_start(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, seeds=[0])
    port = free_port()
    env = harness_env(tmp_path)
    # --block keeps `ray start` in the foreground, in its own process group, so the test can
    # stop this cluster alone; `ray stop` would kill every Ray process on the machine.
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
         "--disable-usage-stats"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_port(port, head, what="ray start")
        result = run_harness(["run", str(path), "--address", f"127.0.0.1:{port}",
                              "--no-progress"], cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"joining the Ray cluster at 127.0.0.1:{port}" in result.stderr
        trials = by_stage(store_runs(f"sqlite:///{tmp_path / 'mlflow.db'}"), "trial")
        assert len(trials) == 2 and all(run.info.status == "FINISHED" for run in trials)
        # Without --address a sweep starts its own Ray beside that cluster (it used to try
        # to join it and die with a ValueError).
        local = run_harness(["run", str(path), "--no-progress"], cwd=tmp_path)
        assert local.returncode == 0, local.stdout + local.stderr
        assert "joining the Ray cluster" not in local.stderr
    finally:
        stop_group(head)


def start_mlflow_server(folder: Path) -> tuple[subprocess.Popen, str]:
    """A real `mlflow server` on a free loopback port in its own process group, answering."""
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "server-artifacts"), "--workers", "1"],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        _wait_for_port(port, server)
    except BaseException:
        stop_group(server)
        raise
    return server, f"http://127.0.0.1:{port}"


def stop_group(process: subprocess.Popen, grace: float = 60) -> None:
    """Stop a process group this test started (only it): SIGTERM, then SIGKILL if the
    machine is too busy for it to exit within `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.parametrize(("args", "changes", "key"), [
    (["--address", "127.0.0.1:{port}"], {}, "--address"),
    ([], {"resources": {"cpus_per_trial": 64}}, "resources.cpus_per_trial"),
    ([], {"resources": {"cpus_per_trial": 1, "gpus_per_trial": 1}}, "resources.gpus_per_trial"),
], ids=["nothing-at-address", "more-cpus-than-the-cluster", "gpus-on-a-cpu-cluster"])
def test_what_ray_cannot_run_is_refused_before_any_run(tmp_path: Path, args: list[str],
                                                        changes: dict, key: str) -> None:
    """Each of these waited forever before; now exit 2 within seconds and no run exists."""
    path = write_experiment(tmp_path, **changes)
    port = free_port()  # nothing listens there
    start = time.time()
    result = run_harness(["run", str(path), "--no-progress",
                          *(arg.format(port=port) for arg in args)], cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{key}:" in result.stderr and "Traceback" not in result.stderr
    assert time.time() - start < 240
    assert store_runs(f"sqlite:///{tmp_path / 'mlflow.db'}") == []


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 600,
                   what: str = "mlflow server") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, f"{what} exited"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")
