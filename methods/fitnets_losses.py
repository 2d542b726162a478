"""FitNets' hint loss (Romero et al. ICLR 2015), as mdistiller computes it: pure functions."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def hint_loss(regressed_student: Tensor, teacher: Tensor) -> Tensor:
    """Mean squared error over every element of the two maps (``F.mse_loss``'s mean, as mdistiller's
    ``FitNet``): the student's map already passed through the regressor, the teacher's detached."""
    if regressed_student.shape != teacher.shape:
        raise ValueError(f"hint maps differ in shape: student (regressed) {tuple(regressed_student.shape)}, "
                         f"teacher {tuple(teacher.shape)}")
    return F.mse_loss(regressed_student, teacher.detach())


def fitnets_loss(student_logits: Tensor, target: Tensor, regressed_student: Tensor, teacher: Tensor,
                 ce_weight: float = 1.0, hint_weight: float = 100.0) -> tuple[Tensor, dict[str, Tensor]]:
    """ce_weight * CE + hint_weight * hint (single stage, as mdistiller trains FitNets)."""
    ce = F.cross_entropy(student_logits, target)
    hint = hint_loss(regressed_student, teacher)
    return ce_weight * ce + hint_weight * hint, {"ce": ce, "hint": hint}
