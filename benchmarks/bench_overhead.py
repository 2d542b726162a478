"""Where a benchmark's wall time goes, in one run: `cmkd bench` (the default quick profile unless told
otherwise) timed from the outside, then its results store read for each trial's own clocks.

Printed, each as a ratio or share with its target (issue 14):
- wall / (sum of the trials' pure training time / parallel slots)          target <= 1.25
- per-trial fixed cost in a warm worker: the job's wall (worker clock) minus its epochs (training +
  evaluation) minus its checkpoint writes; median and 90th percentile         target < 1 s
- checkpoint writing / training time, over all trials and the worst trial   target <= 5%
- evaluation (validation + test every epoch) / training time, for the record
- slot use: the sum of job walls / (slots x wall): what Ray, MLflow and the driver leave idle

    python benchmarks/bench_overhead.py [--profile quick] [--set KEY=VALUE ...] [--out DIR]
    python benchmarks/bench_overhead.py --analyse results/quick --wall 1884   # a finished benchmark
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def analyse(folder: Path, wall: float | None = None) -> None:
    """Where the time of a finished benchmark went; ``wall``: the command's measured wall time (None: from
    the trial records, first start to last end: the sweep itself, without Ray's start and the tables)."""
    from cmkd.results.store import ResultsStore

    cfg = json.loads((folder / "bench.json").read_text())["config"]
    slots = max(1, int(os.cpu_count() // cfg["resources"]["cpus_per_trial"]))
    recs = [r for r in ResultsStore(folder / "results").records() if r.status == "finished" and r.started_at is not None]
    if not recs:
        raise SystemExit(f"{folder}: no finished trial with timings (run by this version of cmkd)")
    if wall is None:
        wall = max(r.ended_at for r in recs) - min(r.started_at for r in recs)
        print(f"{folder}: wall time from the trial records (first start to last end); --wall gives the command's")
    train = sum(r.train_time_s for r in recs)
    epochs = sum(r.wall_time_s for r in recs)
    ckpt = sum(r.checkpoint_s for r in recs)
    jobs = [r.ended_at - r.started_at for r in recs]
    fixed = sorted(j - r.wall_time_s - r.checkpoint_s for j, r in zip(jobs, recs))
    worst_ckpt = max(recs, key=lambda r: r.checkpoint_s / r.train_time_s)
    ideal = train / slots
    print(f"{folder}: {len(recs)} trials on {slots} slots, wall {wall:.0f} s ({wall / 60:.1f} min)")
    print(f"  sum of pure training time / slots: {ideal:8.0f} s   wall / that = {wall / ideal:.3f}  (target <= 1.25)")
    print(f"  per-trial fixed cost (job - epochs - checkpoints): median {statistics.median(fixed):.2f} s, "
          f"90th percentile {fixed[int(0.9 * (len(fixed) - 1))]:.2f} s, max {fixed[-1]:.2f} s  (target < 1 s)")
    print(f"  checkpoint writing / training: {100 * ckpt / train:.2f}% overall, worst trial "
          f"{100 * worst_ckpt.checkpoint_s / worst_ckpt.train_time_s:.2f}% ({worst_ckpt.name})  (target <= 5%)")
    print(f"  evaluation / training: {100 * (epochs - train) / train:.1f}%")
    print(f"  slot use: sum of job walls / (slots x wall) = {sum(jobs) / (slots * wall):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--analyse", type=Path, default=None, help="a finished benchmark folder (no run)")
    ap.add_argument("--wall", type=float, default=None, help="with --analyse: its measured wall time, s")
    args = ap.parse_args()
    if args.analyse:
        analyse(args.analyse, args.wall)
        return
    out = args.out or Path(tempfile.mkdtemp()) / "bench"
    cmd = [sys.executable, "-m", "cmkd", "bench", "--profile", args.profile, "--out", str(out)]
    for s in args.sets:
        cmd += ["--set", s]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    analyse(out, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
