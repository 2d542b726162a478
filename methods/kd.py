"""KDv1 and KDv2: Hinton KD as the DisCoM-KD authors ran it (``kd-methods.md`` section 10).

L = alpha * CE + (1 - alpha) * T^2 * KL(teacher || student) at T = 4; KDv1 alpha = 0 (soft labels
only), KDv2 alpha = 0.5. With ``lskd`` both logits are z-scored first (same T and weights).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from cmkd.harness.errors import UserError

from .base import Batch
from .distill import DistilledStudent, DistillOptions
from .kd_losses import hinton_loss
from .registry import register_method


@dataclass(frozen=True)
class HintonOptions(DistillOptions):
    alpha: float = 0.0
    temperature: float = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.alpha <= 1:
            raise UserError(f"option alpha (the CE weight) must lie in [0, 1], got {self.alpha}")


@dataclass(frozen=True)
class KDv2Options(HintonOptions):
    alpha: float = 0.5


class _Hinton(DistilledStudent):
    def distill(self, student: Tensor, teacher: Tensor, batch: Batch, epoch: int):
        o = self.options
        return hinton_loss(student, teacher, batch.labels(self.modality), o.alpha, o.temperature, o.lskd)


@register_method("kdv1")
class KDv1(_Hinton):
    description = "Hinton KD, soft labels only (alpha 0, T 4): the MFH paper's KDv1"
    Options = HintonOptions


@register_method("kdv2")
class KDv2(_Hinton):
    description = "Hinton KD, 0.5 CE + 0.5 KD (T 4): the MFH paper's KDv2"
    Options = KDv2Options
