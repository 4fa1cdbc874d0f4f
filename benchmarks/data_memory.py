"""Memory and time of the dataset store on an image folder the size of CelebA-HQ at 256.

Generates N smooth random PNGs (default 30,000 at 288x288, in nested folders, so the
center-crop and resize to 256 run), writes an `image_folder` manifest, then measures in fresh
processes: building the store; opening it again (what every later load and Ray worker does);
and the stage-1 access pattern (random batches by index, converted like
harness.data.tensors.to_model_range). Peak RSS is `ru_maxrss` (the process's lifetime) and
VmHWM from /proc/self/status (reset before the batch loop, so it is the loop's own peak);
RssAnon is private memory, RssFile the store pages mapped into the process: page cache, shared
by every process and reclaimable, and more than was read (the kernel maps whole cached folios
around each page touched). Prints figures; asserts nothing.

    python benchmarks/data_memory.py                      # 30,000 images in a temp folder
    python benchmarks/data_memory.py --images 2000
    python benchmarks/data_memory.py --folder /data/celeba_hq_256 --cache-dir /data/cache
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
MIB = 2**20
PER_FOLDER = 1000  # images per sub-folder of the generated tree


def _write_image(job: tuple[Path, int, int]) -> None:
    folder, index, side = job
    rng = np.random.default_rng(index)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    path = folder / f"{index // PER_FOLDER:03d}" / f"{index:06d}.png"
    coarse.resize((side, side), Image.Resampling.BICUBIC).save(path, compress_level=1)


def generate(folder: Path, count: int, side: int) -> float:
    """`count` smooth random side x side PNGs under `folder`, 1000 per sub-folder; seconds."""
    start = time.perf_counter()
    for sub in range(0, count, PER_FOLDER):
        (folder / f"{sub // PER_FOLDER:03d}").mkdir(parents=True, exist_ok=True)
    with Pool(os.cpu_count() or 1) as pool:
        jobs = [(folder, i, side) for i in range(count)]
        for _ in pool.imap_unordered(_write_image, jobs, chunksize=64):
            pass
    return time.perf_counter() - start


def memory() -> dict[str, float]:
    """Peak and current memory of this process, in MiB."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text()
                  .splitlines() if ":" in line)
    fields = {name: int(status[name].split()[0]) / 1024 for name in
              ("VmHWM", "VmRSS", "RssAnon", "RssFile") if name in status}
    return fields | {"ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def reset_peak() -> None:
    """Restart VmHWM from the current RSS (Linux: 5 to clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def child(phase: str, manifest: str, cache_dir: str, steps: int, batch: int) -> dict:
    """Run in a fresh process: `build` loads (and so builds) the store, `batches` opens it and
    draws training batches from it."""
    from harness.data import load_dataset

    if phase == "batches":
        from harness.data.tensors import to_model_range
    result: dict = {"imports": memory()}
    start = time.perf_counter()
    dataset = load_dataset(manifest, cache_dir)
    result |= {"load_s": time.perf_counter() - start, "store": str(dataset.store)}
    if phase == "build":
        return result | {"memory": memory()}
    start = time.perf_counter()
    load_dataset(manifest, cache_dir)
    result["again_s"] = time.perf_counter() - start
    train = dataset.train
    result["before_loop"] = memory()
    reset_peak()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        to_model_range(train[rng.integers(0, len(train), batch)])
    return result | {"loop_s": time.perf_counter() - start, "memory": memory()}


def run_child(phase: str, args: argparse.Namespace, manifest: Path, cache_dir: Path) -> dict:
    command = [sys.executable, __file__, "--child", phase, str(manifest), str(cache_dir),
               "--steps", str(args.steps), "--batch", str(args.batch)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                          env=os.environ | {"PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        raise SystemExit(f"{phase} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_manifest(folder: Path, out: Path, images: int, eval_count: int, res: int) -> Path:
    body = {"name": "data_memory_bench", "source": "image_folder", "path": str(folder),
            "resolution": res, "splits": {"train": images - eval_count, "eval": eval_count}}
    out.write_text(yaml.safe_dump(body))
    return out


def report(label: str, figures: dict[str, float]) -> None:
    print(f"  {label:28} " + "  ".join(f"{k} {v:,.0f}" for k, v in figures.items()) + " (MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30000)
    parser.add_argument("--eval", type=int, help="of them, the eval split (default: a tenth, "
                        "at most 1000)")
    parser.add_argument("--side", type=int, default=288, help="generated images' side")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--folder", type=Path, help="an existing image folder, or where to "
                        "generate one (kept); default: a temp folder, removed after")
    parser.add_argument("--cache-dir", type=Path, help="store root (kept); default: a temp "
                        "folder, removed after")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.eval = min(1000, args.images // 10) if args.eval is None else args.eval
    if args.child:
        print(json.dumps(child(*args.child, args.steps, args.batch)))
        return
    scratch = Path(tempfile.mkdtemp(prefix="data_memory_"))
    folder = args.folder or scratch / "images"
    cache_dir = args.cache_dir or scratch / "cache"
    try:
        measure(args, folder, cache_dir, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def measure(args: argparse.Namespace, folder: Path, cache_dir: Path, scratch: Path) -> None:
    if not folder.is_dir() or not any(folder.iterdir()):
        seconds = generate(folder, args.images, args.side)
        print(f"generated {args.images:,} PNGs of {args.side}x{args.side} in {seconds:.0f} s "
              f"({sum(p.stat().st_size for p in folder.rglob('*.png')) / MIB:,.0f} MiB)")
    manifest = write_manifest(folder, scratch / "bench.yaml", args.images,
                              args.eval, args.resolution)
    res = args.resolution
    in_memory = args.images * res * res * 3
    print(f"{args.images:,} images -> {res}x{res}x3 uint8 "
          f"(train {args.images - args.eval:,}, eval {args.eval:,}); "
          f"{os.cpu_count()} CPU cores")
    build = run_child("build", args, manifest, cache_dir)
    store = Path(build["store"])
    on_disk = sum(p.stat().st_size for p in store.iterdir() if p.is_file())
    print(f"build store          {build['load_s']:8.1f} s   store {store}")
    print(f"  store on disk      {on_disk / MIB:10,.0f} MiB;  one in-memory array of both "
          f"splits {in_memory / MIB:,.0f} MiB")
    report("build: after imports", build["imports"])
    report("build: after the build", build["memory"])
    loop = run_child("batches", args, manifest, cache_dir)
    print(f"open store again     {loop['load_s']:8.2f} s   (fresh process: key, sizes, mmap); "
          f"a second load in that process {loop['again_s']:.2f} s (key only)")
    print(f"batch loop           {loop['loop_s']:8.1f} s   {args.steps} steps of {args.batch} "
          f"random indices ({1000 * loop['loop_s'] / args.steps:.1f} ms/step)")
    report("loop: store opened", loop["before_loop"])
    report("loop: after (VmHWM reset)", loop["memory"])


if __name__ == "__main__":
    main()
