"""Images per second of the engine's training step against a bare PyTorch loop, in one run.

Both sides: the same ResNet-18 student, data tensors, batch size, Adam, and the same flip/rotation
rule; the bare loop is written inline with nothing of cmkd but the model class. Epochs alternate
between the two sides so that machine noise hits both alike. Prints the ratio engine / bare.

    python benchmarks/engine_throughput.py [--epochs 6] [--n 1024] [--size 32] [--batch 128]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from cmkd.harness.engine.spec import TrainConfig, TrialSpec
from cmkd.harness.engine.trial import Engine, prepare
from cmkd.methods.backbones import Classifier


def bare_epoch(model, opt, x, y, train_idx, batch, gen) -> int:
    model.train()
    perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
    images = 0
    for s in range(0, len(perm), batch):
        idx = perm[s:s + batch]
        if len(idx) < 2:
            continue
        xb = x[idx]
        u = torch.rand(len(idx), 4, generator=gen)
        act = u[:, 0] >= 0.5
        xb = torch.where((act & (u[:, 1] < 0.5))[:, None, None, None], xb.flip(-1), xb)
        xb = torch.where((act & (u[:, 2] < 0.5))[:, None, None, None], xb.flip(-2), xb)
        k = torch.clamp((u[:, 3] * 8).long(), max=3)
        for kk in (1, 2, 3):
            sel = act & (u[:, 3] < 0.5) & (k == kk)
            if sel.any():
                xb[sel] = torch.rot90(xb[sel], kk, dims=(-2, -1))
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        images += len(idx)
    return images


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    spec = TrialSpec(dataset="synthetic", method="student", modality="rgb",
                     dataset_options={"n_samples": args.n, "image_size": args.size},
                     train=TrainConfig(epochs=args.epochs, batch_size=args.batch, device=args.device))
    import tempfile

    prep = prepare(spec, out_dir=tempfile.mkdtemp())
    engine = Engine(prep)
    dev = engine.device
    torch.manual_seed(0)
    model = Classifier(3, prep.data.n_classes).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)  # as the engine
    x = torch.from_numpy(prep.data.modalities["rgb"]).to(dev)
    y = torch.from_numpy(prep.data.labels).to(dev)
    train_idx = torch.from_numpy(prep.split.train).to(dev)
    gen = torch.Generator().manual_seed(0)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # warm-up both
    engine.train_epoch(0)
    bare_epoch(model, opt, x, y, train_idx, args.batch, gen)
    eng_rates, bare_rates = [], []
    for e in range(args.epochs):
        sync(); t = time.perf_counter()
        _, n_img = engine.train_epoch(e + 1)
        sync(); eng_rates.append(n_img / (time.perf_counter() - t))
        sync(); t = time.perf_counter()
        n_img = bare_epoch(model, opt, x, y, train_idx, args.batch, gen)
        sync(); bare_rates.append(n_img / (time.perf_counter() - t))
    eng, bare = statistics.median(eng_rates), statistics.median(bare_rates)
    print(f"device {dev}, {len(prep.split.train)} training images {args.size}x{args.size}, batch {args.batch}, "
          f"{args.epochs} epochs each (medians)")
    print(f"engine training step: {eng:8.1f} images/s")
    print(f"bare PyTorch loop:    {bare:8.1f} images/s")
    print(f"ratio engine / bare:  {eng / bare:.3f}")


if __name__ == "__main__":
    main()
