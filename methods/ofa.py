"""OFA (Hao et al., NeurIPS 2023): CE + the OFA loss of the student's logits + the OFA losses of branch
heads on each of its stages, all against the teacher's logits (:mod:`cmkd.methods.ofa_losses`).

Defaults from the authors' ``Hao840/OFAKD`` (commit f7bb896): ``train.py`` (``--gt-loss-weight 1`` line 82,
``--kd-loss-weight 1`` line 83, ``--ofa-stage 1 2 3 4`` line 90: every stage, ``--ofa-loss-weight 1`` line 91,
``--ofa-temperature 1`` line 92) and the README's CIFAR-100 command (line 85, ``--ofa-eps 1.0``; its ImageNet
command, line 63, uses 1.5; ``train.py``'s own default, line 89, is 1). The branches are sized from the
student's own stages and the wider pooled width of student and teacher (``distillers/ofa.py``), so any
convolutional pair works, the heterogeneous ones OFA was made for included: a CIFAR ResNet's three
stages get three branches. A vector encoder (no stage) is refused in one line. The branches are trained
with the student and never exported. ``--lskd`` z-scores every set of logits before the OFA losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from cmkd.errors import UserError

from .backbones import feature_dim_of, stage_names, stage_shape, teacher_feature_dim
from .base import Batch, DataInfo
from .distill import TEMPERATURE, WEIGHT, DistilledStudent, DistillOptions
from .kd_losses import standardize
from .ofa_losses import branch_head, ofa_loss
from .options import option
from .registry import register_method
from .precision import full


@dataclass(frozen=True)
class OFAOptions(DistillOptions):
    ce_weight: float = option(1.0, "weight of CE on labels (--gt-loss-weight)", **WEIGHT)
    kd_weight: float = option(1.0, "weight of the OFA loss of the student's own logits (--kd-loss-weight)", **WEIGHT)
    ofa_weight: float = option(1.0, "weight of the branches' OFA losses, summed (--ofa-loss-weight)", **WEIGHT)
    eps: float = option(1.0, "target-enhancement exponent (README CIFAR-100: 1.0; ImageNet: 1.5)", low=0, low_open=True)
    temperature: float = option(1.0, "softmax temperature (--ofa-temperature)", **TEMPERATURE)


def student_stages(info: DataInfo, modality: str) -> list[str]:
    stages = stage_names(info, modality)
    if not stages:
        raise UserError(f"ofa puts branch heads on the student's stages, but the {info.arch} encoder of {modality} "
                        "has none (a vector encoder): choose a convolutional architecture")
    return stages


@register_method("ofa")
class OFA(DistilledStudent):
    description = "OFA: CE + target-enhanced KD (eps 1) of the logits and of branch heads on every student stage"
    label = "OFA"
    Options = OFAOptions

    def __init__(self, info, modality, options, teacher=None, teacher_kind=None):
        super().__init__(info, modality, options, teacher, teacher_kind)
        self.stages = tuple(student_stages(info, modality))
        width = feature_dim_of(info, modality)
        if teacher_kind:
            width = max(width, teacher_feature_dim(info, teacher_kind))
        n = len(self.stages)
        self.branches = nn.ModuleDict({
            s: branch_head(stage_shape(info, modality, s)[0], n - 1 - i, width, info.n_classes)
            for i, s in enumerate(self.stages)})

    @classmethod
    def check(cls, info: DataInfo, modality, options) -> None:
        super().check(info, modality, options)
        student_stages(info, modality)

    @classmethod
    def epoch_cost(cls, info: DataInfo) -> float:
        return 1.6  # the KD step plus a small network per stage

    def loss(self, batch: Batch, epoch: int):
        o = self.options
        target = batch.labels(self.modality)
        logits, feats = self.net.forward_features(batch.x[self.modality], self.stages)
        logits = full(logits)
        t = self.teacher_forward(batch.x)
        ce = F.cross_entropy(logits, target)
        z = standardize if o.lskd else (lambda v: v)
        t = z(t)
        kd = ofa_loss(z(logits), t, target, o.eps, o.temperature)
        branches = sum(ofa_loss(z(full(self.branches[s](feats[s]))), t, target, o.eps, o.temperature)
                       for s in self.stages)
        return o.ce_weight * ce + o.kd_weight * kd + o.ofa_weight * branches, {"ce": ce, "kd": kd, "branches": branches}
