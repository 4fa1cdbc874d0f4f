"""The `harness` command line: run, ui, data, weights, metrics, report, check."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from harness import __version__
from harness.cli.common import TRACKING_HELP, add_experiment_arguments
from harness.errors import HarnessError

log = logging.getLogger("harness")

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", description="Benchmark and ablation harness for two-stage latent "
        "diffusion models: experiment YAML -> Ray Tune sweep -> MLflow runs.")
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="verbosity of the harness's own log lines (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the sweep of an experiment",
                              description="Expand the experiment's sweep into trials, train "
                              "each distinct stage-1 model once, run every trial on Ray Tune "
                              "and record a parent run plus one child run per trial in MLflow.")
    add_experiment_arguments(run, "experiment YAML, e.g. experiments/ablation_fusion.yaml")
    run.add_argument("--dry-run", action="store_true",
                     help="print the expanded trial table and the shared stage-1 jobs; run "
                          "nothing and write nothing")
    run.add_argument("--resume", action="store_true",
                     help="reopen the latest sweep of this experiment and run only the trials "
                          "that have no FINISHED run of the same config hash")
    run.add_argument("--sweep-id", metavar="ID",
                     help="with --resume: the sweep to reopen instead of the latest")
    run.add_argument("--address", metavar="ADDR",
                     help="join an existing Ray cluster (default: $RAY_ADDRESS, else start a "
                          "local one sized to this machine)")
    run.add_argument("--tracking-uri", metavar="URI", help=TRACKING_HELP)
    run.add_argument("--cache-dir", type=Path, metavar="DIR",
                     help="shared cache of stage-1 models (default: $HARNESS_CACHE_DIR, else "
                          ".harness/cache in the working directory)")
    run.add_argument("--max-concurrent", type=int, metavar="N",
                     help="at most N trials at once (default: resources.max_concurrent_trials, "
                          "else as many as the CPUs allow)")
    run.add_argument("--allow-failures", action="store_true",
                     help="exit 0 even if some trials failed (they are still recorded FAILED)")
    run.add_argument("--verbose", action="store_true",
                     help="stream the trials' own log lines to this terminal")
    run.add_argument("--no-progress", action="store_true",
                     help="hide the progress bar and the trials' progress lines")
    run.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                     help="at most one progress line (stage, step / total, images/s, ETA) per "
                          "stage of a trial every SECONDS (default 30); also logged to its "
                          "MLflow run as progress/<stage>/...")
    run.add_argument("--no-report", action="store_true",
                     help="do not attach the sweep's report (index.md, tables, plots) to its "
                          "MLflow run at the end")
    run.set_defaults(handler=cmd_run)

    ui = commands.add_parser("ui", help="open the MLflow UI on the harness's store",
                             description="Start the MLflow UI on the same store `harness run` "
                             "writes to.")
    ui.add_argument("--tracking-uri", metavar="URI", help=TRACKING_HELP)
    ui.add_argument("--host", default="127.0.0.1", help="interface to listen on (default "
                    "127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    ui.set_defaults(handler=cmd_ui)

    data = commands.add_parser("data", help="inspect data manifests")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    show = data_commands.add_parser("show", help="print counts, shape and content hash of a "
                                    "manifest's dataset and write a preview grid PNG")
    show.add_argument("manifest", type=Path, help="data manifest YAML, e.g. "
                      "data_manifests/skimage_patches.yaml")
    show.add_argument("--out", type=Path, metavar="PNG",
                      help="where to write the preview grid (default: <manifest>_preview.png "
                           "in the working directory)")
    show.add_argument("--cache-dir", type=Path, metavar="DIR",
                      help="where the dataset store is (default: $HARNESS_CACHE_DIR, else "
                           ".harness/cache in the working directory)")
    show.set_defaults(handler=cmd_data_show)

    from harness.cli.tokenize import add_commands as add_tokenize_commands
    from harness.gate.check import add_commands as add_check_commands
    from harness.metrics.cli import add_commands as add_metric_commands
    from harness.reports import add_commands as add_report_commands

    add_metric_commands(commands)
    add_report_commands(commands)
    add_tokenize_commands(commands)
    add_check_commands(commands)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from harness.config import load_experiment
    from harness.sweep import expand, shared_stage1, trial_table

    experiment = load_experiment(args.experiment, args.profile, args.overrides)
    trials = expand(experiment)
    shared = shared_stage1(trials)
    print(f"{experiment.spec.name}: {len(trials)} trials, {len(shared)} stage-1 job"
          f"{'s' if len(shared) != 1 else ''} (dataset {experiment.dataset_path})")
    if args.dry_run:
        from harness.experiment.resources import check_before_ray

        check_before_ray(experiment, args.address)
        print(trial_table(trials))
        for number, (key, members) in enumerate(shared.items()):
            print(f"stage-1 job s1-{number} ({key[:12]}) shared by {len(members)} trial"
                  f"{'s' if len(members) != 1 else ''}")
        return 0
    from harness.experiment.scheduling import RunOptions, run_sweep
    from harness.experiment.summary import print_outcome

    options = RunOptions(resume=args.resume, sweep_id=args.sweep_id, address=args.address,
                         tracking_uri=args.tracking_uri, cache_dir=args.cache_dir,
                         max_concurrent_trials=args.max_concurrent, verbose=args.verbose,
                         progress=not args.no_progress, progress_seconds=args.progress_every)
    outcome = run_sweep(experiment, trials, options)
    print_outcome(outcome, trials, [metric.name for metric in experiment.spec.report.metrics])
    if not args.no_report and not outcome.interrupted:
        from harness.reports.command import attach_report

        try:
            attach_report(args.experiment, args.profile, args.overrides, outcome.tracking_uri,
                          outcome.sweep_id)
            print(f"report attached to the sweep run ({outcome.parent_run_id}, report/); "
                  f"`harness report {args.experiment}` writes it to reports/")
        except Exception as error:  # the sweep is recorded; a report is a convenience
            log.warning("the report was not attached: %s", error)
    if outcome.interrupted:
        return 130
    return 1 if outcome.failed and not args.allow_failures else 0


def cmd_ui(args: argparse.Namespace) -> int:
    from harness.tracking import sweep_pages, tracking_uri

    uri = tracking_uri(args.tracking_uri)
    server = not uri.startswith(("sqlite:", "file:", "postgresql", "mysql"))
    base_url = uri.rstrip("/") if server else f"http://{args.host}:{args.port}"
    for name, runs, sweep in sweep_pages(uri, base_url):  # the report is under its artifacts
        print(f"{name}: runs {runs}\n  latest sweep (its report under Artifacts) {sweep}")
    if server:
        print(f"{uri} is a tracking server: open it in a browser.")
        return 0
    print(f"MLflow UI for {uri} at {base_url} (Ctrl-C to stop)")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", args.host, "--port", str(args.port)]
    return run_server(command)


def run_server(command: list[str], grace: float = 10.0) -> int:
    """Run a server in its own process group and stop the whole group (its workers too) when
    this process gets SIGINT or SIGTERM, so no worker keeps the port."""
    server = subprocess.Popen(command, start_new_session=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return server.wait()
    except KeyboardInterrupt:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, sig)
            try:
                server.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_data_show(args: argparse.Namespace) -> int:
    from harness.data import show

    print(show(args.manifest, args.out, args.cache_dir))
    return 0


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("mlflow", "alembic", "ray", "urllib3", "filelock", "fontTools", "matplotlib",
                  "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Tune's own advice (Tuner.restore, missing result files) does not apply: the harness
    # resumes through MLflow and reports trial results itself.
    logging.getLogger("ray.tune").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    try:
        return args.handler(args)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code

