"""DIST (Huang et al., NeurIPS 2022): CE + beta * inter-class + gamma * intra-class Pearson relations of
softmax(z / T) (:mod:`cmkd.methods.dist_losses`).

Defaults are the authors' released classification code, their ImageNet setting, the only one in their
code: ``hunto/image_classification_sota`` ``lib/models/losses/dist_kd.py`` line 22 (``DIST(beta=1.0,
gamma=1.0)``, no temperature, i.e. T 1) and ``kd_loss.py`` line 15 (``ori_loss_weight=1.0``,
``kd_loss_weight=1.0``), line 30 (``DIST(beta=1, gamma=1)``). CIFAR
ports run T 4 (e.g. ``zkxufo/TTM`` ``train_student.py``: ``--dist_tau 4``, beta = gamma = 1):
``--set "method_options={dist={temperature=4}}"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Batch
from .dist_losses import dist_loss
from .distill import TEMPERATURE, WEIGHT, DistilledStudent, DistillOptions
from .options import option
from .registry import register_method


@dataclass(frozen=True)
class DISTOptions(DistillOptions):
    ce_weight: float = option(1.0, "weight of CE on labels (kd_loss.py ori_loss_weight)", **WEIGHT)
    kd_weight: float = option(1.0, "weight of the DIST term (kd_loss.py kd_loss_weight)", **WEIGHT)
    beta: float = option(1.0, "weight of the inter-class relation (dist_kd.py beta)", **WEIGHT)
    gamma: float = option(1.0, "weight of the intra-class relation (dist_kd.py gamma)", **WEIGHT)
    temperature: float = option(1.0, "softmax temperature T, relations scaled by T^2 (released code: 1; "
                                "CIFAR ports: 4)", **TEMPERATURE)


@register_method("dist")
class DIST(DistilledStudent):
    description = "DIST: CE + inter- and intra-class Pearson relations of the class distributions (T 1)"
    label = "DIST"
    Options = DISTOptions

    def distill(self, student, teacher, batch: Batch, epoch: int):
        o = self.options
        return dist_loss(student, teacher, batch.labels(self.modality), o.ce_weight, o.kd_weight, o.beta, o.gamma,
                         o.temperature, o.lskd)
