"""Load and prepare times of MST-Distill's released layouts at their published sizes, in one run.

Writes fixture files in the released format (``tests/mst_files.py``: AV-MNIST's float32 image rows N x 784 and
audio N x 112 x 112, 70,000 pairs by default; CMMD-V2's torch-saved tuple of 2048- and 768-D features, 16,058
pairs), then times, each in a fresh process (its peak RSS is its own):

Peak memory is each child's own (``VmHWM``). A cache's arrays are memory-mapped: its RSS counts the page cache
pages the hash read, shared by every process on the machine, not a private copy.

- ``load``: the adapter reading the released files as MST-Distill's ``get_data`` does (concatenate, normalise in
  float64 by blocks, keep float32), the content hash and the values check: what every Ray worker would pay;
- ``prepare``: ``cmkd prepare`` into a cache (the same reading, then the cache written);
- ``cache``: reading the cache back (memory-mapped; the content hash kept beside it after the first read), as a
  trial does.

    python benchmarks/mst_scale.py [--avmnist 70000] [--crisismmd 16058] [--dir /tmp/mst-scale]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

CHILD = """
import json, sys, time
from cmkd.datasets import get_dataset
t = time.perf_counter()
data = get_dataset(sys.argv[1], root=sys.argv[2]).load()
data.check_values()
data.fingerprint()
# VmHWM: this process's own peak (ru_maxrss would carry the parent's across fork and exec)
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print(json.dumps({"seconds": time.perf_counter() - t, "rss_gb": hwm / 2**20,
                  "n": data.n, "gib": sum(a.nbytes for a in data.modalities.values()) / 2**30}))
"""


def child(name: str, root: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, name, str(root)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepare(name: str, root: Path, out: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cmkd", "prepare", name, "--root", str(root), "--out", str(out)], check=True,
                   capture_output=True)
    return time.perf_counter() - t


def main() -> int:
    import mst_files

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avmnist", type=int, default=70000, help="pairs (60,000 train + 10,000 test published)")
    ap.add_argument("--crisismmd", type=int, default=16058)
    ap.add_argument("--dir", default="/tmp/mst-scale")
    args = ap.parse_args()
    base = Path(args.dir)
    shutil.rmtree(base, ignore_errors=True)
    t = time.perf_counter()
    train = args.avmnist * 6 // 7
    mst_files.write_avmnist(base / "avmnist", train, args.avmnist - train)
    mst_files.write_crisismmd(base / "crisismmd", args.crisismmd)
    print(f"fixtures written in {time.perf_counter() - t:.0f} s under {base}")
    print(f"{'data set':<10} {'pairs':>7} {'GiB':>6}  {'load s':>7} {'RSS GB':>7}  {'prepare s':>9}  {'cache s':>7} "
          f"{'RSS GB':>7}  {'cache again s':>13}")
    for name in ("avmnist", "crisismmd"):
        load = child(name, base / name)
        prep_s = prepare(name, base / name, base / f"{name}-cache")
        first, again = child(name, base / f"{name}-cache"), child(name, base / f"{name}-cache")
        print(f"{name:<10} {load['n']:>7} {load['gib']:>6.2f}  {load['seconds']:>7.1f} {load['rss_gb']:>7.2f}  "
              f"{prep_s:>9.1f}  {first['seconds']:>7.1f} {first['rss_gb']:>7.2f}  {again['seconds']:>13.2f}")
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
