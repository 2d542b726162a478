"""SDD (Wei et al., CVPR 2024), as SD-KD: 0.1 CE + 0.9 scale-decoupled KD at T 4 on the logits of the
last feature map's 1 x 1, 2 x 2 and 4 x 4 sub-regions (:mod:`cmkd.methods.sdd_losses`).

Defaults (``shicaiwei123/SDD-CVPR2024`` commit e412036): regions ``M = [1,2,4]`` (the README's command,
line 41, ``--M [1,2,4]``); temperature and weights from the KD block of the configuration their repository
is built on (``mdistiller/engine/cfg.py`` lines 61, 63, 64: ``KD.TEMPERATURE 4``, ``CE_WEIGHT 0.1``,
``KD_WEIGHT 0.9``; their ``configs/cifar100/sdd_kd/*.yaml`` set no KD block); ``mdistiller/distillers/KD.py``
(``sdd_kd_loss`` line 16) leaves its warm-up commented out in ``forward_train`` (line 142), so none here. Each network's regions come from its own last stage (``stage4`` of a
torchvision ResNet, ``stage3`` of a CIFAR ResNet or WRN, as the authors' ``layer3``) through its own
classifier head, so that stage must be the map the head's pooled vector comes from: other encoders are
refused in one line. The multi-modal teacher's map is its fused one (the stage summed over its encoders), the
one its head reads once pooled. ``--lskd`` z-scores every region's logits before the KD term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cmkd.errors import UserError

from .backbones import POOL, stage_names, stage_shape
from .base import Batch, DataInfo
from .distill import TEMPERATURE, WEIGHT, DistilledStudent, DistillOptions
from .kd_losses import standardize
from .options import option
from .registry import register_method
from .sdd_losses import SCALES, region_logits, sdd_kd_term
from .precision import full


@dataclass(frozen=True)
class SDDOptions(DistillOptions):
    ce_weight: float = option(0.1, "weight of CE on labels (mdistiller KD.LOSS.CE_WEIGHT)", **WEIGHT)
    kd_weight: float = option(0.9, "weight of the scale-decoupled KD term (KD.LOSS.KD_WEIGHT)", **WEIGHT)
    temperature: float = option(4.0, "softmax temperature T (KD.TEMPERATURE)", **TEMPERATURE)
    scales: str = option("1,2,4", "sub-region grids of the last map (the authors' --M)", choices=tuple(SCALES))


def last_stage(info: DataInfo, modality: str, teacher: bool) -> str:
    """The last stage of ``modality``'s encoder (the teacher's with ``teacher``), built on the meta device;
    refused in one line unless the pooled vector its classifier reads is that stage's map, pooled."""
    who = "teacher" if teacher else "student"
    stages = stage_names(info, modality, teacher)
    if not stages:
        raise UserError(f"sdd reads sub-regions of the {who}'s last feature map, but its encoder has none "
                        "(a vector encoder): choose a convolutional architecture")
    last = stages[-1]
    channels, width = stage_shape(info, modality, last, teacher)[0], stage_shape(info, modality, POOL, teacher)[0]
    if channels != width:
        raise UserError(f"sdd puts sub-regions of the {who}'s last map through its classifier, but that encoder's "
                        f"{last} has {channels} channels and its pooled vector {width}: choose an architecture "
                        "whose classifier pools its last stage (the ResNets and WRNs)")
    return last


@register_method("sdd")
class SDD(DistilledStudent):
    description = "SDD (SD-KD): 0.1 CE + 0.9 KD (T 4) over the 1x1, 2x2, 4x4 sub-region logits of the last map"
    label = "SDD"
    Options = SDDOptions

    def __init__(self, info, modality, options, teacher=None, teacher_kind=None):
        super().__init__(info, modality, options, teacher, teacher_kind)
        self.last = last_stage(info, modality, teacher=False)
        self.teacher_last = last_stage(info, info.rich, teacher=True) if teacher_kind else None

    @classmethod
    def check(cls, info: DataInfo, modality, options) -> None:
        super().check(info, modality, options)
        last_stage(info, modality, teacher=False)  # refuses, before any compute, what cannot be read
        last_stage(info, info.rich, teacher=True)

    @classmethod
    def epoch_cost(cls, info: DataInfo) -> float:
        return 1.35  # the KD step plus a classifier over 21 region vectors per network

    def loss(self, batch: Batch, epoch: int):
        o = self.options
        scales = SCALES[o.scales]
        target = batch.labels(self.modality)
        logits, feats = self.net.forward_features(batch.x[self.modality], (self.last,))
        with torch.no_grad():
            _, t_feats = self.teacher.forward_features(self._teacher_input(batch.x), (self.teacher_last,))
            t = full(region_logits(self.teacher.head, full(t_feats[self.teacher_last]), scales))
        ce = F.cross_entropy(full(logits), target)
        s = region_logits(self.net.head, full(feats[self.last]), scales)
        if o.lskd:
            s, t = standardize(s.transpose(1, 2)).transpose(1, 2), standardize(t.transpose(1, 2)).transpose(1, 2)
        kd = sdd_kd_term(s, t, target, o.temperature)
        return o.ce_weight * ce + o.kd_weight * kd, {"ce": ce, "kd": kd}
