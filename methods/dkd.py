"""DKD (Zhao et al. CVPR 2022): target-class and non-target-class KD decoupled.

L = CE + w(e) * (alpha * TCKD + beta * NCKD), alpha 1, beta 8, T 4, w(e) = min(e / 20, 1) with e
counted from 0 as the DisCoM-KD authors did (first epoch weight 0; ``warmup_count_from_one`` gives
mdistiller's 1/20).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from .base import Batch
from .distill import DistilledStudent, DistillOptions
from .kd_losses import dkd_terms, dkd_warmup, standardize
from .registry import register_method


@dataclass(frozen=True)
class DKDOptions(DistillOptions):
    alpha: float = 1.0
    beta: float = 8.0
    temperature: float = 4.0
    ce_weight: float = 1.0
    warmup_epochs: int = 20
    warmup_count_from_one: bool = False


@register_method("dkd")
class DKD(DistilledStudent):
    description = "Decoupled KD: CE + warm-up x (alpha TCKD + beta NCKD), alpha 1, beta 8, T 4, 20-epoch warm-up"
    Options = DKDOptions

    def distill(self, student: Tensor, teacher: Tensor, batch: Batch, epoch: int):
        o = self.options
        y = batch.labels(self.modality)
        ce = F.cross_entropy(student, y)
        s, t = (standardize(student), standardize(teacher)) if o.lskd else (student, teacher)
        tckd, nckd = dkd_terms(s, t, y, o.temperature)
        w = dkd_warmup(epoch, o.warmup_epochs, o.warmup_count_from_one)
        dkd = w * (o.alpha * tckd + o.beta * nckd)
        return o.ce_weight * ce + dkd, {"ce": ce, "tckd": tckd, "nckd": nckd, "dkd": dkd}
