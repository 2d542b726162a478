"""KDv1 and KDv2: Hinton KD as the DisCoM-KD authors ran it (``kd-methods.md`` section 10).

L = alpha * CE + (1 - alpha) * T^2 * KL(teacher || student) at T = 4; KDv1 alpha = 0 (soft labels
only), KDv2 alpha = 0.5. With ``lskd`` both logits are z-scored first (same T and weights).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .base import Batch
from .distill import TEMPERATURE, DistilledStudent, DistillOptions
from .options import option
from .kd_losses import hinton_loss
from .registry import register_method


@dataclass(frozen=True)
class HintonOptions(DistillOptions):
    alpha: float = option(0.0, "weight of CE on labels; the KD term gets 1 - alpha (KDv1: 0, soft labels only)",
                          low=0, high=1)
    temperature: float = option(4.0, "softmax temperature T (the authors' 4)", **TEMPERATURE)


@dataclass(frozen=True)
class KDv2Options(HintonOptions):
    alpha: float = option(0.5, "weight of CE on labels; the KD term gets 1 - alpha (KDv2: 0.5)", low=0, high=1)


class _Hinton(DistilledStudent):
    def distill(self, student: Tensor, teacher: Tensor, batch: Batch, epoch: int):
        o = self.options
        return hinton_loss(student, teacher, batch.labels(self.modality), o.alpha, o.temperature, o.lskd)


@register_method("kdv1")
class KDv1(_Hinton):
    description = "Hinton KD, soft labels only (alpha 0, T 4): the MFH paper's KDv1"
    label = "KDv1"
    paper_row = 1
    Options = HintonOptions


@register_method("kdv2")
class KDv2(_Hinton):
    description = "Hinton KD, 0.5 CE + 0.5 KD (T 4): the MFH paper's KDv2"
    label = "KDv2"
    paper_row = 2
    Options = KDv2Options
