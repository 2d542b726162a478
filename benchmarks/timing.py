"""The one timed training step the step-cost benchmarks share (augmentation included, CUDA synced)."""

from __future__ import annotations

import time

import torch

from cmkd.harness.engine.augment import augment, strong_augment
from cmkd.harness.engine.step import train_step
from cmkd.methods import Batch


def timed_step(method, opt, raw: dict, y: torch.Tensor, g: torch.Generator, dev: torch.device) -> float:
    """Seconds for one optimiser step of ``method`` on the batch ``raw`` (epoch 30: warm-ups done)."""
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    strong = strong_augment(raw, g) if method.wants_strong_view() else None
    train_step(method, opt, Batch(x=augment(raw, g, True), y=y, strong=strong, index=torch.arange(len(y), device=y.device)), 30)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0
