"""The one training step: what every trial runs, what the dry run's probe and the benchmarks time."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from cmkd.methods import Batch, Method


def make_optimizer(param_groups, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam, fused: one kernel for all parameters. On a CPU it is 3-4x cheaper per step than the
    per-tensor loop (a ResNet-18 step: 17 ms against 55-78 ms on one core, where that step was half
    of a 16-px training step); the same update up to float rounding."""
    return torch.optim.Adam(param_groups, lr=lr, weight_decay=weight_decay, fused=True)


def optimise(method: Method, channels_last: bool = False, compile: bool = False) -> Callable[..., Any]:
    """The GPU path's model side, shared by the engine and ``benchmarks/gpu_throughput.py``: weights in
    channels_last (the frozen teacher's too: it is not a registered submodule) and the loss compiled by
    torch.compile; returns the loss function :func:`train_step` calls. Inputs go with :func:`nhwc`."""
    if channels_last:
        method.to(memory_format=torch.channels_last)
        if method.teacher is not None:
            method.teacher.to(memory_format=torch.channels_last)
    return torch.compile(method.loss) if compile else method.loss


def nhwc(x: dict[str, Tensor] | None) -> dict[str, Tensor] | None:
    """A batch's images in channels_last memory format (the same values); vectors and sequences as they are."""
    return None if x is None else {m: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v
                                   for m, v in x.items()}


def train_step(method: Method, optimizer: torch.optim.Optimizer, batch: Batch, epoch: int, amp: bool = False,
               device_type: str = "cpu", loss_fn=None) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss (bfloat16 autocast when ``amp``; ``loss_fn``: a compiled ``method.loss``), backward, one
    optimiser step; returns the loss and its parts."""
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
        total, parts = (loss_fn or method.loss)(batch, epoch)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return total, parts
