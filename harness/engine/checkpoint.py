"""When a trial writes its resume checkpoint: often enough that a lost node costs little, rarely enough
that writing costs at most a set share of training time, whatever the model and the disk.

A ResNet-18 checkpoint with Adam's moments is ~135 MB (DisCoM-KD's four: ~540 MB). Written every
epoch, it cost 14% of a 16-px benchmark's trial time on this machine; at 300 epochs of 32 px on a
GPU an epoch can take less time than its checkpoint. So the interval follows the measured cost of
the last write: with budget b, a checkpoint is due once the training time since the last one
reaches write_seconds / b. A stopped trial writes one whatever the policy (``Engine.run``); the last
epoch needs none (the result and best weights written next are the end state).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

#: assumed write speed until one write is measured: low on purpose (fsync'ed writes of 135-540 MB ran at
#: 200-500 MB/s here), since an estimate that is too low lets the first write exceed the budget
ASSUMED_BYTES_PER_S = 100e6


@dataclass
class CheckpointPolicy:
    every: int = 0  # epochs; 0 = by the budget alone
    budget: float = 0.05  # most of the training time spent writing; 0 = by ``every`` alone
    write_s: float = 0.0  # cost of the last write (estimated from the size until one is measured)
    since_s: float = 0.0  # training seconds since the last write
    written_s: list[float] = field(default_factory=list)  # every write's seconds, for the trial's record

    @classmethod
    def for_state(cls, every: int, budget: float, state_bytes: int) -> "CheckpointPolicy":
        return cls(every=every, budget=budget, write_s=state_bytes / ASSUMED_BYTES_PER_S)

    def due(self, epoch: int, epochs: int, train_s: float) -> bool:
        """After epoch ``epoch`` (1-based) that trained for ``train_s`` seconds: write a checkpoint now?"""
        self.since_s += train_s
        if epoch >= epochs:
            return False
        if self.every and epoch % self.every == 0:
            return True
        return self.budget > 0 and self.since_s * self.budget >= self.write_s

    def timed_write(self, write) -> None:
        t0 = time.perf_counter()
        write()
        self.write_s = time.perf_counter() - t0
        self.written_s.append(self.write_s)
        self.since_s = 0.0


def state_bytes(*state_dicts) -> int:
    """Bytes of the tensors in some (possibly nested) state dicts."""
    import torch

    total = 0
    stack = list(state_dicts)
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            total += item.numel() * item.element_size()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return total
