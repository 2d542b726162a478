"""MLKD (Jin et al. CVPR 2023): instance, batch and class-level alignment over temperatures {T0,3,5,2,6},
on a weak and a strong view, with the teacher-confidence masks; computed as the reference code does
(see :func:`cmkd.methods.kd_losses.mlkd_loss`). T0 4, CE weight 0.1, KD weight 0.9.

``mlkd-discomkd-code`` is the DisCoM-KD authors' simplified re-write (one view, no masks, a
probability passed where a log-probability belongs): the numbers in the paper's MLKD rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .base import Batch
from .distill import TEMPERATURE, WEIGHT, DistilledStudent, DistillOptions
from .options import option
from .kd_losses import mlkd_discomkd_code_loss, mlkd_loss
from .registry import register_method
from .precision import full


@dataclass(frozen=True)
class MLKDOptions(DistillOptions):
    t0: float = option(4.0, "the first of the five temperatures (t0, 3, 5, 2, 6)", **TEMPERATURE)
    ce_weight: float = option(0.1, "weight of CE on both views", **WEIGHT)
    kd_weight: float = option(0.9, "weight of every KD level", **WEIGHT)


@register_method("mlkd")
class MLKD(DistilledStudent):
    description = "Multi-level logit KD (reference-code behaviour): weak + strong views, masks, T0 4, 0.1 CE / 0.9 KD"
    label = "MLKD"
    paper_row = 5

    @classmethod
    def epoch_cost(cls, info) -> float:
        return 2.5  # two views through student and teacher
    Options = MLKDOptions

    def wants_strong_view(self) -> bool:
        return True

    def loss(self, batch: Batch, epoch: int):
        assert batch.strong is not None
        m = self.modality
        s_w, s_st = full(self.net(batch.x[m])), full(self.net(batch.strong[m]))  # separate BatchNorm passes
        t_w, t_st = self.teacher_forward(batch.x), self.teacher_forward(batch.strong)
        o = self.options
        return mlkd_loss(s_w, t_w, s_st, t_st, batch.labels(m), o.t0, o.ce_weight, o.kd_weight, o.lskd)


@register_method("mlkd-discomkd-code")
class MLKDDisComKDCode(DistilledStudent):
    description = "the DisCoM-KD authors' MLKD re-write (one view, no masks, probability-input quirk): the paper's MLKD rows"
    label = "MLKD (authors' code)"
    Options = DistillOptions

    def distill(self, student: Tensor, teacher: Tensor, batch: Batch, epoch: int):
        return mlkd_discomkd_code_loss(student, teacher, batch.labels(self.modality), self.options.lskd)
