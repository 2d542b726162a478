"""NKD (Yang et al., ICCV 2023, "From knowledge distillation to self-knowledge distillation"): split the
teacher's distribution into its target probability and a *normalised* non-target distribution.

Read from the authors' ``yzd-v/cls_KD`` ``mmcls/models/dis_losses/nkd.py`` (``NKDLoss.forward``):
- target term: ``-mean(t_target * log s_target)``, both at temperature 1, the teacher's probability
  detached: the teacher's confidence weights the student's CE on the label;
- non-target term: the target column removed from both logits, then
  ``-gamma T^2 mean_b sum_c softmax(t_nt / T) log softmax(s_nt / T)``: a cross-entropy (no teacher
  entropy subtracted, so it is KL plus a constant that has no gradient);
- the student's loss is its own CE plus both terms (``distiller.py``: ``ori_loss`` + ``loss_nkd``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .kd_losses import standardize


def non_target(logits: Tensor, target: Tensor) -> Tensor:
    """The B x (C - 1) logits left when each row's target column is removed."""
    B, C = logits.shape
    keep = ~F.one_hot(target, C).bool()
    return logits[keep].view(B, C - 1)


def nkd_terms(student: Tensor, teacher: Tensor, target: Tensor, temperature: float = 3.0,
              gamma: float = 3.5) -> tuple[Tensor, Tensor]:
    """(target term, gamma-weighted non-target term) as the authors compute them."""
    log_ps = F.log_softmax(student, dim=1)
    pt = F.softmax(teacher, dim=1).detach()
    col = target.view(-1, 1)
    target_term = -(pt.gather(1, col) * log_ps.gather(1, col)).mean()
    log_qs = F.log_softmax(non_target(student, target) / temperature, dim=1)
    qt = F.softmax(non_target(teacher, target) / temperature, dim=1)
    non_target_term = -gamma * temperature ** 2 * (qt * log_qs).sum(dim=1).mean()
    return target_term, non_target_term


def nkd_loss(student: Tensor, teacher: Tensor, target: Tensor, ce_weight: float = 1.0, temperature: float = 3.0,
             gamma: float = 3.5, lskd: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
    """ce_weight CE + target term + non-target term; CE on the raw logits, LSKD z-scores the logits both
    NKD terms read."""
    ce = F.cross_entropy(student, target)
    s, t = (standardize(student), standardize(teacher)) if lskd else (student, teacher)
    tgt, non = nkd_terms(s, t, target, temperature, gamma)
    return ce_weight * ce + tgt + non, {"ce": ce, "target": tgt, "non_target": non}
