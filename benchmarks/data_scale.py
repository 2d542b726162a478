"""Data at the paper's scale: what ``cmkd prepare`` and a benchmark's workers cost in time and memory.

Writes stand-ins of the three published layouts at their published sizes (or reads real ones from
``--raw DIR/<data set>``), then measures, per data set:

- ``cmkd prepare`` with 1 and with 2 decoding workers, each in a fresh process: wall time and its
  phases, files decoded per second, the peak RSS of the main process over the cache's size, and the
  largest worker's peak; the two caches must hold the same bytes (content hash);
- the time from a fresh process to a trial's first training step on the cache;
- with ``--bench``, a 2-slot ``cmkd bench`` on the cache (teacher and student of two seeds, one epoch,
  width 8): the PSS of each Ray worker that maps the cache, and of the driver, sampled every second.

    python benchmarks/data_scale.py --data eurosat-ms-sar --bench      # full size: 27,000 pairs
    python benchmarks/data_scale.py --data sunrgbd,tristar --scale 0.25

Files go under ``--work`` (default a temporary folder, removed at the end unless ``--keep``).
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
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

#: published sizes; the stand-ins' native image sizes are the real files' (SUN RGB-D Kinect v2 730 x 530,
#: TRISTAR 640 x 480 assumed), EuroSAT's 64 x 64
PUBLISHED = {"eurosat-ms-sar": 27000, "sunrgbd": 2105, "tristar": 14200}
FILES_PER_SAMPLE = {"eurosat-ms-sar": 2, "sunrgbd": 2, "tristar": 2}
GB = 1e9


def write_standin(name: str, root: Path, scale: float) -> int:
    """A layout of ``scale`` x the published sample count; returns the samples it holds."""
    from real_fixtures import write_eurosat, write_sunrgbd, write_tristar

    n = max(30, int(PUBLISHED[name] * scale))
    if name == "eurosat-ms-sar":
        from cmkd.datasets.eurosat import CLASSES

        write_eurosat(root, classes=tuple(CLASSES), per_class=n // len(CLASSES), size=64)
        return n // len(CLASSES) * len(CLASSES)
    if name == "sunrgbd":
        write_sunrgbd(root, per_class=n // 3, size=(730, 530))
        return n // 3 * 3
    shots = 10
    frames = max(3, round(n * 3 / (3 * shots)) // 3 * 3)  # a third of a shot's frames carry one of the six tags
    return write_tristar(root, shots_per_split=shots, frames=frames, size=(640, 480))


# ---- children: one fresh process per measurement -------------------------------------------------
def child_prepare(name: str, raw: str, out: str, workers: int) -> None:
    from cmkd.harness.cli.main import main

    base = rss_now()  # the interpreter and its imports, before the prepare
    t0 = time.perf_counter()
    code = main(["prepare", name, "--root", raw, "--out", out, "--workers", str(workers)])
    wall = time.perf_counter() - t0
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    content = json.loads((Path(out) / "content.json").read_text())
    print(json.dumps({"code": code, "wall": wall, "phases": manifest["seconds"], "n": manifest["n"],
                      "content_hash": content["content_hash"],
                      "rss_base": base, "rss_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "rss_worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))


def child_first_step(name: str, cache: str, modality: str) -> None:
    t0 = time.perf_counter()
    from cmkd.harness.engine.data import load_data
    from cmkd.harness.engine.spec import TrainConfig, TrialSpec
    from cmkd.harness.engine.step import train_step
    from cmkd.harness.engine.trial import Engine, prepare

    t_import = time.perf_counter() - t0
    load_data(name, cache, {})
    t_load = time.perf_counter() - t0 - t_import
    spec = TrialSpec(dataset=name, method="student", seed=0, modality=modality, data_root=cache,
                     train=TrainConfig(epochs=1, batch_size=64, width=8, threads=1))
    with tempfile.TemporaryDirectory() as runs:
        engine = Engine(prepare(spec, runs_root=runs), runs)
        engine.method.train()
        batch = next(engine.batches(0))
        train_step(engine.method, engine.optimizer, batch, 0, False, "cpu", engine.loss_fn)
    print(json.dumps({"import": t_import, "load": t_load, "first_step": time.perf_counter() - t0,
                      "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- PSS of a running bench -----------------------------------------------------------------------
def pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(root: int) -> list[int]:
    parent = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parent[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = [c for c, pp in parent.items() if pp == pid]
        out += kids
        todo += kids
    return out


def maps_cache(pid: int, cache: Path) -> bool:
    try:
        return str(cache) in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def mapped_rss(pid: int, folder: Path) -> int:
    """Bytes of files under ``folder`` resident in the process's mappings (its share of the cache it touched)."""
    total, inside = 0, False
    try:
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:
                inside = len(head) >= 6 and head[5].startswith(str(folder))
            elif inside and line.startswith("Rss:"):
                total += int(head[1]) * 1024
    except OSError:
        pass
    return total


def bench_pss(name: str, cache: Path, work: Path) -> dict:
    """A 2-slot bench on the cache; the largest summed PSS of the workers that map it, each one's, the driver's."""
    rich, other = {"eurosat-ms-sar": ("ms", "sar"), "sunrgbd": ("rgb", "depth"), "tristar": ("thermal", "depth")}[name]
    config = work / "scale.toml"
    config.write_text(f'name = "data-scale"\nseeds = [0, 1]\nscenarios = ["cross-modal"]\nmethods = ["kdv1"]\n'
                      f'lskd = [false]\n\n[[datasets]]\nname = "{name}"\nroot = "{cache}"\n\n'
                      f'[train]\nepochs = 1\nbatch_size = 64\nwidth = 8\n\n[resources]\ncpus_per_trial = 1\n')
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "cmkd.harness.cli.main", "bench", "--config", str(config),
                             "--out", str(work / "bench")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True)
    reader.start()
    peak = {"workers_sum": 0, "workers": [], "driver": 0, "tree": 0, "driver_cache": 0}
    while proc.poll() is None:
        kids = descendants(proc.pid)
        workers = [pss(p) for p in kids if maps_cache(p, cache)]
        driver = pss(proc.pid)
        tree = driver + sum(pss(p) for p in kids)
        if sum(workers) > peak["workers_sum"]:
            peak.update(workers_sum=sum(workers), workers=sorted(workers, reverse=True))
        peak["driver"], peak["tree"] = max(peak["driver"], driver), max(peak["tree"], tree)
        peak["driver_cache"] = max(peak["driver_cache"], mapped_rss(proc.pid, cache))
        time.sleep(1.0)
    reader.join(5)
    if proc.returncode:
        raise SystemExit("bench failed:\n" + "".join(log[-40:]))
    peak["wall"] = time.time() - t0
    return peak


def gb(x: float) -> str:
    return f"{x / GB:.2f} GB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="eurosat-ms-sar,sunrgbd,tristar")
    ap.add_argument("--scale", type=float, default=1.0, help="share of the published sample count for stand-ins")
    ap.add_argument("--raw", help="a folder with real layouts, one sub-folder per data set name")
    ap.add_argument("--work", help="where layouts and caches go (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--bench", action="store_true", help="also the 2-slot bench PSS (on the first data set)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        {"prepare": lambda: child_prepare(rest[0], rest[1], rest[2], int(rest[3])),
         "first-step": lambda: child_first_step(*rest)}[kind]()
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="data-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs, {open('/proc/meminfo').readline().split()[1]} kB RAM; work in {work}")
    try:
        for i, name in enumerate(args.data.split(",")):
            raw = Path(args.raw) / name if args.raw else work / f"{name}-raw"
            if not args.raw:
                t = time.perf_counter()
                n = write_standin(name, raw, args.scale)
                print(f"\n{name}: stand-in of {n} samples written in {time.perf_counter() - t:.0f} s")
            runs = {}
            for workers in (1, 2):
                out = work / f"{name}-cache-{workers}"
                shutil.rmtree(out, ignore_errors=True)
                runs[workers] = r = run_child("prepare", name, str(raw), str(out), str(workers))
                size = sum(f.stat().st_size for f in out.glob("*.npy"))
                r["cache"] = size
                files_s = r["n"] * FILES_PER_SAMPLE[name] / r["phases"]["decode"]
                r["files_s"] = files_s
                print(f"{name} prepare, {workers} worker(s): {r['n']} samples, wall {r['wall']:.1f} s "
                      f"({', '.join(f'{k} {v:.1f}' for k, v in r['phases'].items())}); {files_s:.0f} files/s; "
                      f"cache {gb(size)}; peak RSS {gb(r['rss_self'])} = interpreter {gb(r['rss_base'])} + "
                      f"{(r['rss_self'] - r['rss_base']) / size:.2f}x the cache "
                      f"(largest worker {gb(r['rss_worker'])})")
            same = runs[1]["content_hash"] == runs[2]["content_hash"]
            print(f"{name}: 2 workers vs 1: files/s x{runs[2]['files_s'] / runs[1]['files_s']:.2f}, "
                  f"wall x{runs[1]['wall'] / runs[2]['wall']:.2f}; same content: {same}")
            if not same:
                raise SystemExit("the caches differ")
            shutil.rmtree(work / f"{name}-cache-1")
            cache = work / f"{name}-cache-2"
            modality = {"eurosat-ms-sar": "sar", "sunrgbd": "depth", "tristar": "depth"}[name]
            fs = run_child("first-step", name, str(cache), modality)
            print(f"{name}: first training step {fs['first_step']:.1f} s after a fresh process starts (imports "
                  f"{fs['import']:.1f} s, cache open {fs['load']:.3f} s); its peak RSS {gb(fs['rss'])}")
            if args.bench and i == 0:
                p = bench_pss(name, cache, work)
                size = runs[2]["cache"]
                print(f"{name}: 2-slot bench ({p['wall']:.0f} s): workers' summed PSS at most {gb(p['workers_sum'])} "
                      f"({' + '.join(gb(w) for w in p['workers'])}) = 1 cache ({gb(size)}) + "
                      f"{gb(max(0, p['workers_sum'] - size))}; target <= 1 cache + 2 x 1.5 GB: "
                      f"{'met' if p['workers_sum'] <= size + 3 * GB else 'MISSED'}; driver PSS at most "
                      f"{gb(p['driver'])}, of which cache pages {gb(p['driver_cache'])}; whole process tree at most "
                      f"{gb(p['tree'])}")
                own = max(0, p["workers_sum"] - size) / 2
                for k in (8, 32):
                    print(f"{name}: host RAM for {k} trials on one node, extrapolated: 1 cache + {k} x {gb(own)} (a "
                          f"worker's own, measured) + the driver = {gb(size + k * own + p['driver'])}")
            if not args.keep:
                shutil.rmtree(raw, ignore_errors=True) if not args.raw else None
                shutil.rmtree(cache, ignore_errors=True)
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
