from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.tracking import TrackedRun, flatten, init_store, tracking_uri


def test_flatten_nested_config() -> None:
    assert flatten({"stage1": {"f": 4, "kind": "vq"}, "seeds": [0, 1], "x": {}}) == {
        "stage1.f": "4", "stage1.kind": "vq", "seeds": "[0, 1]", "x": "{}"}


def test_default_store_is_an_absolute_sqlite_path(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri() == "http://127.0.0.1:5000"
    assert tracking_uri("sqlite:///other.db") == f"sqlite:///{tmp_path.resolve()}/other.db"


def test_tracked_run_records_a_failure_with_its_traceback(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = init_store(uri, "unit")
    assert init_store(uri, "unit") == experiment_id  # idempotent
    parent = MlflowClient(uri).create_run(experiment_id).info.run_id
    with TrackedRun(uri, experiment_id, parent, "trial", {"stage": "trial"}, {"a": "1"}) as run:
        run.log_metrics({"loss": 0.5}, step=3)
        raise ValueError("diverged")
    stored = MlflowClient(uri).get_run(run.run_id)
    assert stored.info.status == "FAILED"
    assert stored.data.tags["error"] == "ValueError: diverged"
    assert stored.data.tags["mlflow.parentRunId"] == parent
    assert stored.data.params == {"a": "1"} and stored.data.metrics == {"loss": 0.5}
    traceback = Path(MlflowClient(uri).download_artifacts(run.run_id, "traceback.txt",
                                                          str(tmp_path)))
    assert "ValueError: diverged" in traceback.read_text()
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts beside the database


@pytest.mark.slow
def test_harness_ui_serves_the_store(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    init_store(f"sqlite:///{tmp_path}/mlflow.db", "unit")
    ui = subprocess.Popen([sys.executable, "-m", "harness", "ui", "--port", str(port)],
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          start_new_session=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert ui.poll() is None, ui.stdout.read().decode()
                time.sleep(0.5)
        else:
            pytest.fail("harness ui did not answer")
        ui.send_signal(signal.SIGTERM)  # to `harness ui` alone, as a process manager would
        assert ui.wait(timeout=120) == 0
        deadline = time.time() + 60
        while time.time() < deadline:  # the server and its workers are gone with it
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    break
            time.sleep(0.5)
        else:
            pytest.fail(f"port {port} still answers after harness ui was stopped")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ui.pid, signal.SIGKILL)


def test_the_experiment_opens_on_its_runs_with_its_description(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = init_store(uri, "fusion")
    tags = MlflowClient(uri).get_experiment(experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert init_store(uri, "fusion", "FFTD fusion modes") == experiment_id
    tags = MlflowClient(uri).get_experiment(experiment_id).tags
    assert tags["mlflow.note.content"] == "FFTD fusion modes"
