"""Time of one training step of each distilled student relative to a plain ``student`` step.

Same batch, same ResNet-18 student, one run; the teacher (a ResNet-18 on the rich modality, in
eval mode, no gradients) adds a forward pass only. Targets: KD-family step <= 1.4x the student
step; MLKD (two views, so two student and two teacher passes) <= 2.8x.

    python benchmarks/kd_step_cost.py [--batch 128] [--size 32] [--reps 10]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from cmkd.datasets import get_dataset
from cmkd.harness.data import data_info
from cmkd.harness.step import make_optimizer
from cmkd.methods import get_method
from cmkd.methods.backbones import Classifier
from timing import timed_step

STUDENTS = ["kdv1", "kdv2", "dkd", "ctkd", "mlkd", "mlkd-discomkd-code"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    data = get_dataset("synthetic", n_samples=max(args.batch, 60), image_size=args.size).load()
    info = data_info(data)
    g = torch.Generator().manual_seed(0)
    raw = {m: torch.from_numpy(a[: args.batch]).to(dev) for m, a in data.modalities.items()}
    y = torch.from_numpy(data.labels[: args.batch]).to(dev)
    teacher = Classifier(3, info.n_classes).to(dev).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def build(name: str, lskd: bool):
        cls = get_method(name)
        opts = cls.Options.from_dict({"lskd": True} if lskd else {}, name)
        torch.manual_seed(0)
        method = cls(info, "depth", opts, teacher if cls.teacher_kinds else None,
                     "cross-modal" if cls.teacher_kinds else None).to(dev).train()
        return method, make_optimizer(method.param_groups(1e-4), 1e-4)

    runs = [("student", False)] + [(n, lskd) for n in STUDENTS for lskd in (False, True)]
    built = {r: build(*r) for r in runs}
    times: dict = {r: [] for r in runs}
    for rep in range(args.reps + 2):  # round-robin, so that machine noise hits every method alike
        for r in runs:
            t = timed_step(*built[r], raw, y, g, dev)
            if rep >= 2:
                times[r].append(t)
    med = {r: statistics.median(v) for r, v in times.items()}
    base = med[("student", False)]
    print(f"device {dev}, batch {args.batch}, {args.size}x{args.size}, median of {args.reps} steps, round-robin")
    print(f"{'student':<28}{base * 1000:9.1f} ms   1.00x")
    for name, lskd in runs[1:]:
        t = med[(name, lskd)]
        target = 2.8 if name == "mlkd" else 1.4
        label = f"{name}{' w/ LSKD' if lskd else ''}"
        flag = "ok" if t / base <= target else "OVER"
        print(f"{label:<28}{t * 1000:9.1f} ms   {t / base:.2f}x  (target <= {target}x, {flag})")


if __name__ == "__main__":
    main()
