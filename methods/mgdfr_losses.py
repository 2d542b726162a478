"""MGDFR (Xue et al., ICLR 2023, "The modality focusing hypothesis"): distil only the teacher's
*modality-general decisive* feature channels, those whose shuffling most changes how well the teacher's
output agrees with a student of the other modality.

Read from MST-Distill's ``KD_methods/MGDFR.py`` and ``main-MGDFR.py`` (``Gray-OREO/MST-Distill``) and
MFH's ``ravdess/main_overlap_tag.py`` (``zihuixue/MFH``):
- stage 1 co-trains a copy of the teacher with a student: ``CE_t + CE_s + MSE(z_t, z_s)``;
- stage 2 scores each channel i of the teacher's feature: shuffle that channel across the batch
  (``my_permute_new``), recompute the teacher's logits and take their MSE to the co-student's, averaged
  over ``repeat_permute`` shuffles and the data, then min-max normalised; the ``ratio`` of channels with
  the lowest scores are removed;
- stage 3 trains a fresh student with ``(1 - alpha) CE + alpha T^2 KL`` (T 4, ``KD.py``) from the
  co-trained teacher whose removed channels are frozen to their batch mean (``my_freeze_new``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def permutation_mse(features: Tensor, head: nn.Linear, student_logits: Tensor, generator: torch.Generator | None = None,
                    repeats: int = 10) -> Tensor:
    """Per channel i, the mean over ``repeats`` shuffles of MSE(head(features with column i shuffled across
    the batch), student logits), one independent shuffle per channel and repeat. The head is linear, so a
    shuffled column i changes the logits by (shuffled - original) x W[:, i]: every channel at once."""
    B, D = features.shape
    base = head(features) - student_logits  # B x C
    weight = head.weight  # C x D
    out = torch.zeros(D, dtype=features.dtype, device=features.device)
    for _ in range(repeats):
        perm = torch.rand(D, B, generator=generator, device=features.device).argsort(dim=1)  # D x B
        delta = features.gather(0, perm.t()) - features  # B x D: row b of column i takes row perm[i, b]
        shifted = base.unsqueeze(1) + delta.unsqueeze(2) * weight.t().unsqueeze(0)  # B x D x C
        out += shifted.pow(2).mean(dim=(0, 2)) / repeats
    return out


def keep_mask(salience: Tensor, ratio: float) -> Tensor:
    """True for the channels kept: all but the ``int(ratio * D)`` lowest-scoring ones (min-max scaling,
    as the authors apply it, changes no order)."""
    removed = salience.argsort()[: int(ratio * salience.numel())]
    keep = torch.ones_like(salience, dtype=torch.bool)
    keep[removed] = False
    return keep


def freeze_channels(features: Tensor, keep: Tensor) -> Tensor:
    """The features with every removed channel replaced by its batch mean."""
    frozen = features.clone()
    frozen[:, ~keep] = features[:, ~keep].mean(dim=0)
    return frozen


def co_training_loss(teacher_logits: Tensor, student_logits: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Stage 1: both networks' CE plus the MSE between their logits (gradients into both)."""
    ce_t, ce_s = F.cross_entropy(teacher_logits, target), F.cross_entropy(student_logits, target)
    mse = F.mse_loss(teacher_logits, student_logits)
    return ce_t + ce_s + mse, {"co_ce_teacher": ce_t, "co_ce_student": ce_s, "co_mse": mse}
