"""The float width a loss is computed in.

Losses run in at least float32: a bfloat16 autocast output (``train.amp``) goes up to float32, as before,
and a ``train.precision = "float64"`` trial's stays float64. ``x.float()`` would cast a float64 trial's
logits down to float32 and bring back the rounding that float64 keeps out of the trajectory (a number
then depends on the CPU's instruction set again).
"""

from __future__ import annotations

import torch
from torch import Tensor

_FULL = (torch.float32, torch.float64)


def full(x: Tensor) -> Tensor:
    """``x`` in float32 or wider: unchanged when it already is, else as float32."""
    return x if x.dtype in _FULL else x.float()
