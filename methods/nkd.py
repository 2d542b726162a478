"""NKD (Yang et al., ICCV 2023): CE + the teacher's target probability weighting the student's
log-probability of the label + gamma T^2 cross-entropy between the normalised non-target distributions
(:mod:`cmkd.methods.nkd_losses`).

Defaults are the authors' CIFAR-100 setting, ``yzd-v/cls_KD``
``configs/distillers/cifar100/res34_distill_res18_cifar.py`` lines 64-65 (``NKDLoss``: ``temp=3.0``,
``gamma=3.5``),
the regime of this benchmark (small images trained from scratch, as the CIFAR-100 values every other
KD method here uses); the loss class's own defaults, ``temp=1.0, gamma=1.5``
(``mmcls/models/dis_losses/nkd.py``), are the ImageNet ones. The student's CE has weight 1
(``mmcls/models/classifiers/distiller.py``: ``ori_loss`` + ``loss_nkd``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Batch
from .distill import TEMPERATURE, WEIGHT, DistilledStudent, DistillOptions
from .nkd_losses import nkd_loss
from .options import option
from .registry import register_method


@dataclass(frozen=True)
class NKDOptions(DistillOptions):
    ce_weight: float = option(1.0, "weight of CE on labels (distiller.py ori_loss)", **WEIGHT)
    temperature: float = option(3.0, "temperature of the non-target term (authors' CIFAR-100: 3; ImageNet: 1)",
                                **TEMPERATURE)
    gamma: float = option(3.5, "weight of the non-target term (authors' CIFAR-100: 3.5; ImageNet: 1.5)", **WEIGHT)


@register_method("nkd")
class NKD(DistilledStudent):
    description = "NKD: CE + teacher-weighted target term + normalised non-target KD (T 3, gamma 3.5)"
    label = "NKD"
    Options = NKDOptions

    def distill(self, student, teacher, batch: Batch, epoch: int):
        o = self.options
        return nkd_loss(student, teacher, batch.labels(self.modality), o.ce_weight, o.temperature, o.gamma, o.lskd)
