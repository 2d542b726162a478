"""Images/s of a training step on one CUDA GPU, in one run:
(a) plain (float32, NCHW, eager) vs optimised (channels_last + bfloat16 autocast + torch.compile, the
    engine's `--channels-last --amp --compile`) for a KD student step (ResNet-18 + the teacher's forward)
    and a DisCoM-KD step (four ResNet-18s), at 32, 64 and 128 px;
(b) fractional packing: 1 vs N trials' processes sharing the GPU (as `gpus_per_trial = 1/N` packs them),
    each running the optimised student step at 64 px; the packed figure is the sum of their rates over
    the same window.
Goals (issue 14): optimised >= 2x plain at 64 px; 4 packed trials >= 2.5x one trial's throughput.

    python benchmarks/gpu_throughput.py [--sizes 32 64 128] [--batch 128] [--steps 30] [--packed 4]

Without a CUDA GPU it says so and exits 2; `--device cpu` runs the same code on the CPU (a check that
the script works, not a figure to report).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

from cmkd.datasets import get_dataset
from cmkd.harness.engine.augment import augment
from cmkd.harness.engine.data import data_info
from cmkd.harness.engine.step import make_optimizer, nhwc, optimise, train_step
from cmkd.methods import Batch, get_method
from cmkd.methods.backbones import Classifier


def build(kind: str, size: int, batch: int, dev: torch.device, optimised: bool):
    data = get_dataset("synthetic", n_samples=max(batch, 480), image_size=size).load()
    info = data_info(data)
    torch.manual_seed(0)
    if kind == "discomkd":
        cls = get_method("discomkd")
        method = cls(info, None, cls.Options(batches="paired"))
    else:
        teacher = Classifier(info.channels[info.rich], info.n_classes).to(dev).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        cls = get_method("kdv1")
        method = cls(info, "depth", cls.Options(), teacher, "cross-modal")
    method = method.to(dev).train()
    loss_fn = optimise(method, channels_last=optimised, compile=optimised)
    opt = make_optimizer(method.param_groups(1e-4), 1e-4)
    raw = {m: torch.from_numpy(a[:batch]).to(dev) for m, a in data.modalities.items()}
    y = torch.from_numpy(data.labels[:batch]).to(dev)
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        x = augment(raw, g, True)
        train_step(method, opt, Batch(x=nhwc(x) if optimised else x, y=y), 30, optimised and dev.type == "cuda",
                   dev.type, loss_fn)

    return step


def images_per_s(step, batch: int, steps: int, dev: torch.device, wait=None) -> float:
    """Images/s over ``steps`` timed steps after five warm-up steps; ``wait`` (packed children) is called
    between the two, so that every child times the same window."""
    for _ in range(5):  # warm-up: compilation, cuDNN autotuning, allocator
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    if wait is not None:
        wait()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def packed(n: int, args) -> float:
    """Sum of the rates of ``n`` processes running the optimised student step at 64 px at once.

    Each child says "ready" once warm (compiled, autotuned); when all are, each is sent one start time a
    second ahead, so the timed windows coincide without a fixed guess at how long compilation takes."""
    cmd = [sys.executable, __file__, "--child", "--batch", str(args.batch), "--steps", str(args.steps),
           "--device", args.device]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            raise SystemExit(f"a packed child failed before its timed steps (exit {p.wait()})")
    start_at = time.time() + 1.0
    for p in procs:
        p.stdin.write(f"{start_at}\n")
        p.stdin.flush()
    rates = [json.loads(p.communicate()[0].strip().splitlines()[-1])["images_per_s"] for p in procs]
    return sum(rates)


def wait_for_start() -> None:
    """A packed child's barrier: report readiness, then sleep until the start time the parent sends."""
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    time.sleep(max(0.0, start_at - time.time()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--packed", type=int, default=4)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU visible: nothing to measure (pass --device cpu to check that the script runs)", file=sys.stderr)
        raise SystemExit(2)
    if args.child:
        step = build("student", 64, args.batch, dev, optimised=True)
        print(json.dumps({"images_per_s": images_per_s(step, args.batch, args.steps, dev, wait_for_start)}))
        return
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"device {name}, batch {args.batch}, {args.steps} timed steps after 5 warm-up steps")
    print(f"{'step':<10} {'px':>4} {'plain img/s':>12} {'optimised':>12} {'ratio':>6}")
    for kind in ("student", "discomkd"):
        for size in args.sizes:
            plain = images_per_s(build(kind, size, args.batch, dev, False), args.batch, args.steps, dev)
            fast = images_per_s(build(kind, size, args.batch, dev, True), args.batch, args.steps, dev)
            print(f"{kind:<10} {size:>4} {plain:>12.0f} {fast:>12.0f} {fast / plain:>6.2f}")
    one, many = packed(1, args), packed(args.packed, args)
    print(f"packing, optimised student step at 64 px: 1 trial {one:.0f} img/s, {args.packed} trials "
          f"{many:.0f} img/s together: {many / one:.2f}x (goal >= 2.5x for 4)")


if __name__ == "__main__":
    main()
