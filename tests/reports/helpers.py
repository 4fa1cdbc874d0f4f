"""A real MLflow store (sqlite) with three sweeps, filled through MLflow's own client API."""

from __future__ import annotations

import json
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from harness.config import ReportConfig, ReportMetric
from harness.reports.settings import ReportSettings, from_experiment

FUSIONS = ["add", "concat", "adaptive", "gated", "broken"]
# (psnr, lpips) per seed; PSNR (higher better) ranks adaptive > concat, LPIPS (lower better)
# ranks add < adaptive, so the two directions put bold and underline on different rows.
ABLATION = {
    "add": [(20.0, 0.10), (22.0, 0.12)],
    "concat": [(25.0, 0.20), (26.0, 0.22)],
    "adaptive": [(30.0, 0.15), (31.0, 0.16)],
    "gated": [(24.0, 0.50), None],  # seed 1 failed; ranked over the finished seed
    "broken": [None, None],  # every seed failed
}
K_VALUES = [16, 64, 256, 1024]
POWER_LAWS = {"ddcm": (2.0, -0.3), "gddcm": (3.0, -0.5)}  # LPIPS = a * K^b


def add_sweep(uri: str, experiment: str, sweep_id: str, start: int,
              trials: list[dict[str, Any]]) -> None:
    """One parent run and one child run per trial, with the harness's tag conventions."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    parent = client.create_run(experiment_id, run_name=f"sweep-{sweep_id}", start_time=start,
                               tags={"sweep_id": sweep_id, "stage": "sweep",
                                     "git_commit": "c0ffee1"}).info.run_id
    for index, trial in enumerate(trials):
        trial_id = f"{experiment}-{index:03d}"
        tags = {"sweep_id": sweep_id, "stage": "trial", "trial_id": trial_id,
                "config_hash": f"{sweep_id}-{index}", "git_commit": "c0ffee1",
                "swept": json.dumps(trial["params"], sort_keys=True),
                MLFLOW_PARENT_RUN_ID: parent} | trial.get("tags", {})
        run_id = client.create_run(experiment_id, run_name=trial_id, start_time=start + index + 1,
                                   tags=tags).info.run_id
        metrics = [Metric(name, value, 0, 0) for name, value in trial.get("metrics", {}).items()]
        metrics += [Metric(name, value, step, step) for name, values in
                    trial.get("curves", {}).items() for step, value in enumerate(values)]
        client.log_batch(run_id, metrics=metrics,
                         params=[Param(k, str(v)) for k, v in trial["params"].items()])
        if "error" in trial:
            client.set_tag(run_id, "error", trial["error"])
        client.set_terminated(run_id, trial.get("status", "FAILED" if "error" in trial
                                                else "FINISHED"))
    client.set_terminated(parent, "FINISHED")


def ablation_trials(shift: float = 0.0) -> list[dict[str, Any]]:
    trials = []
    for fusion, seeds in ABLATION.items():
        for seed, values in enumerate(seeds):
            trial: dict[str, Any] = {"params": {"stage2.fusion": fusion, "seed": seed}}
            if values is None:
                trial["error"] = f"RuntimeError: {fusion} diverged\nTraceback ..."
            else:
                trial["metrics"] = {"recon/psnr": values[0] + shift, "recon/lpips": values[1]}
                if fusion == "add":  # both spellings of the tag
                    key = "unavailable/fid" if seed else "fid.unavailable"
                    trial["tags"] = {key: "no Inception weights offline"}
                else:
                    trial["metrics"]["fid"] = 10.0 + seed
            trials.append(trial)
    # a run of adaptive/seed 0 left by an interrupted driver; --resume re-ran that trial
    trials.append({"params": {"stage2.fusion": "adaptive", "seed": 0}, "status": "KILLED",
                   "metrics": {"recon/psnr": 99.0}, "tags": {"config_hash": "adaptive-0"}})
    trials[4]["tags"] = {"config_hash": "adaptive-0"}
    return trials


def codebook_trials() -> list[dict[str, Any]]:
    trials = []
    for variant, (scale, exponent) in POWER_LAWS.items():
        for k in K_VALUES:
            for seed, wobble in enumerate((1.01, 0.99)):  # the mean is the power law exactly
                lpips = scale * k ** exponent
                trials.append({"params": {"tokenizer.variant": variant, "stage1.K": k,
                                          "seed": seed},
                               "metrics": {"lpips": lpips * wobble},
                               "curves": {"train/loss": [1.0 / (step + 1) + seed * 0.01
                                                         for step in range(6)]}})
    return trials


def ablation_settings() -> ReportSettings:
    report = ReportConfig(rows=["stage2.fusion"], metrics=[
        ReportMetric(name="recon/psnr", better="higher"),
        ReportMetric(name="recon/lpips", better="lower"),
        ReportMetric(name="fid", better="lower")])
    return from_experiment(report, {"stage2": {"fusion": {"sweep": FUSIONS}}})


def codebook_settings() -> ReportSettings:
    report = ReportConfig(rows=["stage1.K"], columns=["tokenizer.variant"],
                          metrics=[ReportMetric(name="lpips", better="lower")])
    return from_experiment(report, {})


def table_rows(markdown: str) -> dict[str, dict[str, str]]:
    """The Markdown table as {row label: {header: cell}}."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    split = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]
    header, body = split[0], split[2:]
    return {row[0]: dict(zip(header, row, strict=True)) for row in body}
