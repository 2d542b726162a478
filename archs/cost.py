"""What a network costs: parameters and FLOPs counted on the meta device (no weights, no compute), and
the measured latency at batch 1 and throughput at batch 128 on a real device. Plans and the cost table
read these instead of assuming every network costs a ResNet-18."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Counted:
    params: int
    #: multiply-adds count 2 (torch.utils.flop_counter's convention), for one sample
    flops: int


def count_module(module: nn.Module, example) -> Counted:
    """Parameters and forward FLOPs of a built module on one example (batch 1, a tensor or a dict of them),
    by one forward pass in eval mode without gradients."""
    was_training = module.training
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module.eval()(example)
    module.train(was_training)
    return Counted(sum(p.numel() for p in module.parameters()), int(counter.get_total_flops()))


def count(module_or_builder, example_shape: tuple[int, ...]) -> Counted:
    """Parameters and forward FLOPs of one sample of ``example_shape`` (without the batch dimension);
    ``module_or_builder`` is a module or a zero-argument callable that builds one (built on the meta device)."""
    from .base import on_meta

    module = module_or_builder if isinstance(module_or_builder, nn.Module) else on_meta(module_or_builder)
    with torch.device("meta"):
        module = module.to("meta").eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            module(torch.empty(1, *example_shape))
    return Counted(sum(p.numel() for p in module.parameters()), int(counter.get_total_flops()))


@dataclass(frozen=True)
class Measured:
    latency_ms: float  # batch 1, median of the timed calls
    images_per_s: float  # batch ``batch``
    device: str


def measure(module: nn.Module, make_input, device: torch.device | str = "cpu", batch: int = 128,
            repeats: int = 3) -> Measured:
    """Median latency at batch 1 and images/s at ``batch``, in eval mode without gradients, after one warm-up
    call each (on CUDA, synchronised). ``make_input(n)`` gives a batch of n on ``device``."""
    device = torch.device(device)
    was_training = module.training
    module.eval()

    def timed(n: int) -> float:
        x = make_input(n)
        times = []
        with torch.no_grad():
            for i in range(repeats + 1):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                module(x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if i:  # the first call warms up
                    times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    try:
        return Measured(1000 * timed(1), batch / timed(batch), str(device))
    finally:
        module.train(was_training)
