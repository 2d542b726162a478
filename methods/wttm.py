"""WTTM (Zheng & Yang, ICLR 2024): CE + weight * (sum_c p_t^l) KL(p_t^l / sum p_t^l || softmax(s)), the
teacher power-transformed at temperature 1 and each sample weighted by its normaliser
(:mod:`cmkd.methods.wttm_losses`).

Defaults from the authors' ``zkxufo/TTM``: CE weight 1 (``train_student.py``: ``-r`` default 1), the
README's one WTTM command (lines 40-41: ``--add wttm --ttm_l 0.2 ... -a 4``: exponent 0.2, weight 4), and no extra
Hinton KD term (``kd_weight`` 0; the README's plain runs pass ``-a 0``). The paper tunes the exponent
and weight per teacher/student pair; those tables were not read here, so the README's values stand.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Batch
from .distill import TEMPERATURE, WEIGHT, DistilledStudent, DistillOptions
from .options import option
from .registry import register_method
from .wttm_losses import wttm_loss


@dataclass(frozen=True)
class WTTMOptions(DistillOptions):
    ce_weight: float = option(1.0, "weight of CE on labels (train_student.py -r)", **WEIGHT)
    weight: float = option(4.0, "weight of the WTTM term (README: -a 4)", **WEIGHT)
    power: float = option(0.2, "exponent l of the teacher's power transform (README: --ttm_l 0.2)", low=0,
                          low_open=True)
    kd_weight: float = option(0.0, "weight of an added Hinton KD term (train_student.py --add kd -a)", **WEIGHT)
    kd_temperature: float = option(4.0, "temperature of that KD term (--kd_T)", **TEMPERATURE)


@register_method("wttm")
class WTTM(DistilledStudent):
    description = "WTTM: CE + sample-weighted KL to the power-transformed teacher (l 0.2, weight 4)"
    label = "WTTM"
    Options = WTTMOptions

    def distill(self, student, teacher, batch: Batch, epoch: int):
        o = self.options
        return wttm_loss(student, teacher, batch.labels(self.modality), o.ce_weight, o.weight, o.power, o.kd_weight,
                         o.kd_temperature, o.lskd)
