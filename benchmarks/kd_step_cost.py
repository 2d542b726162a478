"""Time of one training step of each distilled student relative to a plain ``student`` step.

Same batch, same ResNet-18 student, one run; the teacher (a ResNet-18 on the rich modality, in
eval mode, no gradients) adds a forward pass only. Targets: KD-family step <= 1.4x the student
step (the later logit methods DIST, NKD, WTTM, SDD: <= 1.6x; OFA, with a branch network per
student stage: <= 2x; MGDFR's distillation stage <= 1.6x, its co-training stage, a teacher and a
student both trained, <= 2.4x); MLKD (two views, so two student and two teacher passes) <= 2.8x; the feature
methods (FitNets, RKD) <= 1.6x; CRD with its memory bank <= 2x (the bank sized to ``--bank`` training
samples, so that each sample draws min(16384, other-class pool) negatives as on a real data set); C2KD
fine-tunes a copy of the teacher, so its step holds a second backward pass: <= 2.4x (<= 1.6x with
``train_teacher=false``). MST-Distill has bounds of its own per stage (``MST_BOUNDS``): its masking modules
are the cost, not the networks.

With ``--arch``/``--teacher-arch`` the student and the teacher are those architectures (``cmkd archs``), and
every ratio is against that student's own plain step: a teacher heavier than its student shows as a larger
ratio (the targets above are for the paper's resnet18 -> resnet18).

    python benchmarks/kd_step_cost.py [--batch 128] [--size 32] [--reps 10] [--bank 5000]
                                      [--arch resnet18] [--teacher-arch resnet18] [--only kdv1,fitnets]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from timing import timed_step

from cmkd.datasets import get_dataset
from cmkd.harness.engine.data import data_info
from cmkd.harness.engine.step import make_optimizer
from cmkd.methods import get_method
from cmkd.methods.backbones import build_teacher_network

STUDENTS = ["kdv1", "kdv2", "dkd", "ctkd", "mlkd", "mlkd-discomkd-code", "dist", "nkd", "wttm", "sdd", "ofa", "mgdfr",
            "fitnets", "rkd", "crd", "c2kd", "mst"]
CO_TRAINING = "_co_training"  # not an option: the run times MGDFR's first stage
#: the label a run's extra setting adds
VARIANTS = (("train_teacher", " frozen teacher"), (CO_TRAINING, " co-training"), ("co_epochs", " co-training"),
            ("mask_epochs", " masking"))
#: MST-Distill's own bounds: its five masking modules (each a Linear D -> D x D/2 and attention over D tokens,
#: D = 512 at the paper's width) outweigh the ResNet-18 student at 32 px; stage 3 runs them forward, the one
#: masking epoch (the authors' default) trains them, the one co-training epoch trains four encoders
MST_BOUNDS = {"mst": 12.0, "mst co-training": 4.5, "mst masking": 45.0}
#: each run's step-time target relative to the student's (the KD family's 1.4x unless listed)
TARGETS = {"mlkd": 2.8, "dist": 1.6, "nkd": 1.6, "wttm": 1.6, "sdd": 1.6, "ofa": 2.0, "mgdfr": 1.6,
           "mgdfr co-training": 2.4, "fitnets": 1.6, "rkd": 1.6, "crd": 2.0,
           "c2kd": 2.4, "c2kd frozen teacher": 1.6, **MST_BOUNDS}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--bank", type=int, default=5000, help="training samples CRD's memory bank holds")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", default="resnet18", help="the students' architecture")
    ap.add_argument("--teacher-arch", default="resnet18", help="the teacher's architecture")
    ap.add_argument("--only", default="", help="comma-separated methods to time (default: all)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    data = get_dataset("synthetic", n_samples=max(args.batch, 120), image_size=args.size).load()
    info = data_info(data, arch=args.arch, teacher_arch=args.teacher_arch)
    g = torch.Generator().manual_seed(0)
    raw = {m: torch.from_numpy(a[: args.batch]).to(dev) for m, a in data.modalities.items()}
    y = torch.from_numpy(data.labels[: args.batch]).to(dev)
    teacher = build_teacher_network(info, "cross-modal").to(dev).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    mm_teacher = build_teacher_network(info, "multi-modal").to(dev).eval().requires_grad_(False)

    bank_labels = torch.randint(0, info.n_classes, (args.bank,), generator=torch.Generator().manual_seed(1))

    def build(name: str, lskd: bool, extra: dict):
        cls = get_method(name)
        co_training = extra.pop(CO_TRAINING, False)
        opts = cls.Options.from_dict({**({"lskd": True} if lskd else {}), **extra}, name)
        torch.manual_seed(0)
        kind = cls.teacher_kinds[0] if cls.teacher_kinds else None
        method = cls(info, "depth", opts, mm_teacher if kind == "multi-modal" else teacher if kind else None, kind)
        method.on_train_split(bank_labels)
        if co_training:  # MGDFR's first stage: its co-training epochs end at half of 100
            method.on_epoch_start(0, 100)
        if name == "mst":  # the stage epoch 30 falls in (co_epochs / mask_epochs 50 put it in stage 1 / 2)
            method.on_epoch_start(30, 100)
        method = method.to(dev).train()
        return method, make_optimizer(method.param_groups(1e-4), 1e-4)

    def has_lskd(name: str) -> bool:
        return "lskd" in get_method(name).Options().to_dict()

    chosen = [n for n in STUDENTS if not args.only or n in args.only.split(",")]
    runs = [("student", False, ())] + [(n, lskd, ()) for n in chosen for lskd in (False, True)
                                       if not lskd or has_lskd(n)]
    if "mgdfr" in chosen:
        runs.append(("mgdfr", False, ((CO_TRAINING, True),)))
    if "c2kd" in chosen:
        runs.append(("c2kd", False, (("train_teacher", False),)))
    if "mst" in chosen:
        runs += [("mst", False, (("co_epochs", 50),)), ("mst", False, (("mask_epochs", 50),))]
    built = {r: build(r[0], r[1], dict(r[2])) for r in runs}
    times: dict = {r: [] for r in runs}
    for rep in range(args.reps + 2):  # round-robin, so that machine noise hits every method alike
        for r in runs:
            t = timed_step(*built[r], raw, y, g, dev)
            if rep >= 2:
                times[r].append(t)
    med = {r: statistics.median(v) for r, v in times.items()}
    base = med[("student", False, ())]
    print(f"device {dev}, batch {args.batch}, {args.size}x{args.size}, median of {args.reps} steps, round-robin; "
          f"CRD bank {args.bank} samples; {args.teacher_arch} -> {args.arch}")
    print(f"{'student':<28}{base * 1000:9.1f} ms   1.00x")
    for name, lskd, extra in runs[1:]:
        t = med[(name, lskd, extra)]
        label = f"{name}{dict(VARIANTS).get(extra[0][0], '') if extra else ''}{' w/ LSKD' if lskd else ''}"
        if (args.arch, args.teacher_arch) != ("resnet18", "resnet18"):  # the targets are the paper's pair's
            print(f"{label:<28}{t * 1000:9.1f} ms   {t / base:.2f}x")
            continue
        target = TARGETS.get(label.replace(" w/ LSKD", ""), 1.4)
        flag = "ok" if t / base <= target else "OVER"
        print(f"{label:<28}{t * 1000:9.1f} ms   {t / base:.2f}x  (target <= {target}x, {flag})")


if __name__ == "__main__":
    main()
