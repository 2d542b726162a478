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
from .distill import TEMPERATURE, WEIGHT, DistilledStudent, DistillOptions
from .options import option
from .kd_losses import dkd_terms, dkd_warmup, standardize
from .registry import register_method


@dataclass(frozen=True)
class DKDOptions(DistillOptions):
    alpha: float = option(1.0, "weight of TCKD (target-class KD)", **WEIGHT)
    beta: float = option(8.0, "weight of NCKD (non-target-class KD; the authors' 8)", **WEIGHT)
    temperature: float = option(4.0, "softmax temperature T", **TEMPERATURE)
    ce_weight: float = option(1.0, "weight of CE on labels", **WEIGHT)
    warmup_epochs: int = option(20, "epochs of the linear warm-up of the DKD term (0: none)", low=0)
    warmup_count_from_one: bool = option(False, "mdistiller's epoch count (first epoch 1/W); the authors count from 0")


@register_method("dkd")
class DKD(DistilledStudent):
    description = "Decoupled KD: CE + warm-up x (alpha TCKD + beta NCKD), alpha 1, beta 8, T 4, 20-epoch warm-up"
    label = "DKD"
    paper_row = 3
    Options = DKDOptions

    def loss_ramps_up(self) -> bool:  # the DKD term's weight grows from 0 over the warm-up
        return self.options.warmup_epochs > 0

    def distill(self, student: Tensor, teacher: Tensor, batch: Batch, epoch: int):
        o = self.options
        y = batch.labels(self.modality)
        ce = F.cross_entropy(student, y)
        s, t = (standardize(student), standardize(teacher)) if o.lskd else (student, teacher)
        tckd, nckd = dkd_terms(s, t, y, o.temperature)
        w = dkd_warmup(epoch, o.warmup_epochs, o.warmup_count_from_one)
        dkd = w * (o.alpha * tckd + o.beta * nckd)
        return o.ce_weight * ce + dkd, {"ce": ce, "tckd": tckd, "nckd": nckd, "dkd": dkd}
