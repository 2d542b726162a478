"""A whole DisCoM-KD run (`cmkd train --method discomkd`, start-up to exit, export included) on arrays in the
official code's layout, against the official code's time on the same arrays and CPU.

The official code is not part of this project, so the reference is one of:
- `--official-seconds S`: the official script's measured wall time on the arrays this script writes
  (it prints the command: `python main_DisCoM-KD.py DIR RGB DEPTH` with EPOCHS set to the same count);
- `--baseline REV` (default 3024628, the code as issue 14 was written): the anchor of that issue. On
  1,200 samples of 32 px, 10 epochs, a quiet machine, that code ran a whole DisCoM-KD run 1.15-1.20x
  slower than the official code. This script times REV and this checkout in one run, alternately, on the same arrays, so the
  official time is estimated as REV's / 1.175 (the interval 1.15-1.20 is printed as the ratio's range).
Goal: this checkout's whole run <= 0.85x the official one.

    python benchmarks/discomkd_vs_official.py [--samples 1200] [--size 32] [--epochs 10] [--reps 3]
        [--baseline 3024628 | --official-seconds S] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ANCHOR = (1.15, 1.20)  # the baseline's whole run / the official code's, measured when issue 14 was written


def write_arrays(folder: Path, samples: int, size: int) -> None:
    """The synthetic data set's rgb and depth as the official code reads them, split by the official rule."""
    sys.path.insert(0, str(REPO.parent))
    from cmkd.datasets import get_dataset
    from cmkd.datasets.splits import make_split

    data = get_dataset("synthetic", n_samples=samples, image_size=size).load()
    np.save(folder / "RGB_data_normalized.npy", data.modalities["rgb"])
    np.save(folder / "DEPTH_data_normalized.npy", data.modalities["depth"])
    np.save(folder / "labels.npy", data.labels)
    split = make_split(data.labels, 0)
    for name, idx in (("train", split.train), ("valid", split.val), ("test", split.test)):
        np.save(folder / f"{name}_idx.npy", idx)


def cmkd_run(package_parent: Path, arrays: Path, out: Path, args) -> float:
    """Wall seconds of one `cmkd train` of DisCoM-KD, as a user runs it (a fresh process)."""
    cmd = [sys.executable, "-m", "cmkd", "train", "--method", "discomkd", "--dataset", "official-arrays",
           "--root", str(arrays), "--epochs", str(args.epochs), "--threads", str(args.threads), "--out", str(out),
           "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(package_parent), "MLFLOW_DISABLE_TELEMETRY": "true"}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=package_parent, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def checkout(rev: str, into: Path) -> Path:
    """``rev`` of this repository as an importable ``cmkd`` package under ``into``."""
    target = into / "cmkd"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(target), rev], check=True,
                   capture_output=True)
    return into


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1200)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--baseline", default="3024628", help="the revision the anchor was measured on")
    ap.add_argument("--official-seconds", type=float, default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    arrays = tmp / "arrays"
    arrays.mkdir()
    write_arrays(arrays, args.samples, args.size)
    print(f"arrays: {arrays} ({args.samples} samples, {args.size} px); official command: "
          f"python main_DisCoM-KD.py {arrays} RGB DEPTH   (with EPOCHS = {args.epochs} in functions.py)")
    here: list[float] = []
    base: list[float] = []
    base_pkg = None if args.official_seconds else checkout(args.baseline, tmp / "baseline")
    try:
        for rep in range(args.reps):  # alternate, so that machine noise hits both alike
            here.append(cmkd_run(REPO.parent, arrays, tmp / f"here{rep}", args))
            if base_pkg is not None:
                base.append(cmkd_run(base_pkg, arrays, tmp / f"base{rep}", args))
    finally:
        if base_pkg is not None:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_pkg / "cmkd")],
                           capture_output=True)
    t_here = statistics.median(here)
    print(f"this checkout: whole run {t_here:.1f} s (median of {args.reps}: {', '.join(f'{t:.1f}' for t in here)})")
    if args.official_seconds:
        print(f"official code (given): {args.official_seconds:.1f} s   ratio {t_here / args.official_seconds:.3f}  "
              "(goal <= 0.85)")
        return
    t_base = statistics.median(base)
    lo, hi = (t_here / t_base * a for a in ANCHOR)
    print(f"baseline {args.baseline}: whole run {t_base:.1f} s ({', '.join(f'{t:.1f}' for t in base)}); "
          f"this / baseline = {t_here / t_base:.3f}")
    print(f"estimated against the official code (baseline = {ANCHOR[0]}-{ANCHOR[1]}x official): ratio "
          f"{lo:.3f}-{hi:.3f}  (goal <= 0.85)")


if __name__ == "__main__":
    main()
