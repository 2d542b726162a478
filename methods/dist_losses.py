"""DIST (Huang et al., NeurIPS 2022): match the teacher's *relations*, not its probabilities.

Pearson correlation between the student's and the teacher's class distributions, row by row (each
sample's distribution over classes: inter-class) and column by column (each class's scores over the
batch: intra-class). Read from the authors' ``hunto/image_classification_sota``
``lib/models/losses/dist_kd.py``: a correlation is the cosine of the two centred vectors with eps 1e-8
added to the product of their norms; each relation loss is 1 minus the mean correlation, scaled by T^2.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .kd_losses import standardize

EPS = 1e-8  # the authors' cosine_similarity eps


def pearson_rows(a: Tensor, b: Tensor, eps: float = EPS) -> Tensor:
    """Per-row Pearson correlation of two B x C tensors (eps added to the norms' product, as the authors)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def inter_class_relation(y_s: Tensor, y_t: Tensor) -> Tensor:
    """1 - mean over samples of the correlation between their class distributions."""
    return 1 - pearson_rows(y_s, y_t).mean()


def intra_class_relation(y_s: Tensor, y_t: Tensor) -> Tensor:
    """1 - mean over classes of the correlation between their scores across the batch."""
    return inter_class_relation(y_s.t(), y_t.t())


def dist_terms(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """(inter, intra), each T^2 (1 - mean correlation) of softmax(z / T)."""
    y_s = F.softmax(student / temperature, dim=1)
    y_t = F.softmax(teacher / temperature, dim=1)
    t2 = temperature ** 2
    return t2 * inter_class_relation(y_s, y_t), t2 * intra_class_relation(y_s, y_t)


def dist_loss(student: Tensor, teacher: Tensor, target: Tensor, ce_weight: float = 1.0, kd_weight: float = 1.0,
              beta: float = 1.0, gamma: float = 1.0, temperature: float = 1.0,
              lskd: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
    """ce_weight CE + kd_weight (beta inter + gamma intra); CE on the raw logits, LSKD z-scores the
    logits the relations read."""
    ce = F.cross_entropy(student, target)
    s, t = (standardize(student), standardize(teacher)) if lskd else (student, teacher)
    inter, intra = dist_terms(s, t, temperature)
    return ce_weight * ce + kd_weight * (beta * inter + gamma * intra), {"ce": ce, "inter": inter, "intra": intra}
