"""The one training step: what every trial runs, what the dry run's probe and the benchmarks time."""

from __future__ import annotations

import torch
from torch import Tensor

from cmkd.methods import Batch, Method


def train_step(method: Method, optimizer: torch.optim.Optimizer, batch: Batch, epoch: int, amp: bool = False,
               device_type: str = "cpu") -> tuple[Tensor, dict[str, Tensor]]:
    """Loss (bfloat16 autocast when ``amp``), backward, one optimiser step; returns the loss and its parts."""
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
        total, parts = method.loss(batch, epoch)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return total, parts
