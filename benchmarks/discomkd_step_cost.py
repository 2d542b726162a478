"""One DisCoM-KD training step (four ResNet-18s for two modalities) against the steps it replaces:
a multi-modal teacher step plus one distilled-student step per modality (each with its teacher
forward). Printed as a ratio, in one run; plus the peak memory of each kind of step at batch 128
(CUDA: ``max_memory_allocated``; CPU: the rise of the peak resident set, VmHWM, of a fresh process
building the model and running three steps).

    python benchmarks/discomkd_step_cost.py [--batch 128] [--size 32] [--reps 6]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

import torch
from timing import timed_step

from cmkd.datasets import get_dataset
from cmkd.harness.engine.data import data_info
from cmkd.harness.engine.step import make_optimizer
from cmkd.methods import get_method
from cmkd.methods.backbones import FusionClassifier


def build(kind: str, info, dev):
    torch.manual_seed(0)
    if kind == "discomkd":
        cls = get_method("discomkd")
        method = cls(info, None, cls.Options(batches="paired"))
    elif kind == "teacher-mm":
        cls = get_method("teacher-mm")
        method = cls(info, None, cls.Options())
    else:  # a KD student of the multi-modal teacher on modality `kind`
        teacher = FusionClassifier(info.channels, info.n_classes).to(dev).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        cls = get_method("kdv2")
        method = cls(info, kind, cls.Options(), teacher, "multi-modal")
    method = method.to(dev).train()
    return method, make_optimizer(method.param_groups(1e-4), 1e-4)


def setup(args):
    dev = torch.device(args.device)
    data = get_dataset("synthetic", n_samples=max(args.batch, 60), image_size=args.size).load()
    raw = {m: torch.from_numpy(a[: args.batch]).to(dev) for m, a in data.modalities.items()}
    return dev, data_info(data), raw, torch.from_numpy(data.labels[: args.batch]).to(dev)


def peak_memory_mb(kind: str, args) -> float:
    """Peak memory of three steps of ``kind`` (in a fresh process on CPU)."""
    if args.device.startswith("cuda"):
        dev, info, raw, y = setup(args)
        method, opt = build(kind, info, dev)
        torch.cuda.reset_peak_memory_stats()
        g = torch.Generator().manual_seed(0)
        for _ in range(3):
            timed_step(method, opt, raw, y, g, dev)
        return torch.cuda.max_memory_allocated() / 2**20
    out = subprocess.run([sys.executable, __file__, "--measure", kind, "--batch", str(args.batch), "--size",
                          str(args.size), "--device", args.device], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:  # child process: peak RSS of a few steps
        dev, info, raw, y = setup(args)
        with open("/proc/self/clear_refs", "w") as fh:  # reset the kernel's peak-RSS mark (VmHWM)
            fh.write("5")
        base = _status_kb("VmRSS")
        method, opt = build(args.measure, info, dev)
        g = torch.Generator().manual_seed(0)
        for _ in range(3):
            timed_step(method, opt, raw, y, g, dev)
        print(json.dumps({"peak_mb": (_status_kb("VmHWM") - base) / 1024}))
        return
    dev, info, raw, y = setup(args)
    kinds = ["discomkd", "teacher-mm", *info.channels]
    built = {k: build(k, info, dev) for k in kinds}
    g = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for rep in range(args.reps + 2):
        for k in kinds:
            t = timed_step(*built[k], raw, y, g, dev)
            if rep >= 2:
                times[k].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    replaced = med["teacher-mm"] + sum(med[m] for m in info.channels)
    print(f"device {dev}, batch {args.batch}, {args.size}x{args.size}, modalities {list(info.channels)}, "
          f"median of {args.reps} steps, round-robin")
    print(f"DisCoM-KD step (4 ResNet-18):                 {med['discomkd'] * 1000:8.1f} ms")
    print(f"teacher-mm step:                              {med['teacher-mm'] * 1000:8.1f} ms")
    for m in info.channels:
        print(f"KD student step on {m:<8} (+ teacher fwd):   {med[m] * 1000:8.1f} ms")
    print(f"ratio DisCoM-KD / (teacher + students):       {med['discomkd'] / replaced:.3f}")
    for k in ("discomkd", "teacher-mm", next(iter(info.channels))):
        label = k if k in ("discomkd", "teacher-mm") else f"KD student ({k})"
        print(f"peak memory, model + optimiser + {label} steps at batch {args.batch}: {peak_memory_mb(k, args):8.1f} MiB")


if __name__ == "__main__":
    main()
