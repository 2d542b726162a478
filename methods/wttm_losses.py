"""WTTM (Zheng & Yang, ICLR 2024, "Knowledge distillation based on transformed teacher matching"): match
a power-transformed (sharpened or smoothed) teacher at temperature 1, each sample weighted by how
smooth the teacher's distribution is.

Read from the authors' ``zkxufo/TTM`` ``distiller_zoo/wttm.py``: ``q = p_t^l / sum(p_t^l)``, the sample
weight is that normaliser ``sum_c p_t^l`` (larger for a flatter teacher when l < 1), the loss is the batch
mean of weight x KL(q || softmax(s)). ``train_student.py`` / ``helper/loops.py`` combine it as
``r CE + a KD(T) + b WTTM``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .kd_losses import kd_loss, standardize


def transformed_teacher(teacher: Tensor, power: float) -> tuple[Tensor, Tensor]:
    """(q, weight): softmax(t)^l normalised per row, and its normaliser sum_c softmax(t)^l."""
    powered = F.softmax(teacher, dim=1).pow(power)
    weight = powered.sum(dim=1)
    return powered / weight.unsqueeze(1), weight


def wttm_term(student: Tensor, teacher: Tensor, power: float = 0.2) -> Tensor:
    """mean_b [ sum_c p_t^l ] * KL(q || softmax(s)); a q that underflows to 0 adds 0 (xlogy, as kl_div)."""
    q, weight = transformed_teacher(teacher, power)
    log_ps = F.log_softmax(student, dim=1)
    kl = (torch.xlogy(q, q) - q * log_ps).sum(dim=1)
    return (weight * kl).mean()


def wttm_loss(student: Tensor, teacher: Tensor, target: Tensor, ce_weight: float = 1.0, weight: float = 4.0,
              power: float = 0.2, kd_weight: float = 0.0, kd_temperature: float = 4.0,
              lskd: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
    """ce_weight CE + kd_weight Hinton KD(kd_temperature) + weight WTTM; CE on the raw logits, LSKD
    z-scores the logits the distillation terms read."""
    ce = F.cross_entropy(student, target)
    s, t = (standardize(student), standardize(teacher)) if lskd else (student, teacher)
    wttm = wttm_term(s, t, power)
    parts = {"ce": ce, "wttm": wttm}
    total = ce_weight * ce + weight * wttm
    if kd_weight:
        parts["kd"] = kd_loss(s, t, kd_temperature)
        total = total + kd_weight * parts["kd"]
    return total, parts
