"""MST-Distill (Li et al., ACM MM 2025): the pure parts of its three stages.

Read from the authors' code (``Gray-OREO/MST-Distill``: ``main-MST-Distill.py`` and ``KD_methods/MST.py``):
- stage 1, co-training: every network (the multi-modal teacher, the auxiliary teacher of the other
  modality, the student) learns from the labels and from each other, ``CE + sum of T^2 KL`` at T 4, with
  gradients into *both* sides of every KL term (``distillation_loss`` detaches nothing);
- stage 2, masking modules: each specialised teacher (a network with one feature layer gated by its
  masking module) is fitted to the frozen student, ``T^2 KL(p_student || p_masked)`` with the student's
  side detached (``distillation_loss_detached(args, outputs_t, outputs_s)``);
- stage 3, routed distillation: a gating network reads the student's logits, its softmax picks the top-k
  specialised teachers per sample; the student learns ``w_task CE + w_kl KD(top-k) + w_lb balance``, the
  weights decayed after each epoch (``w_lb`` x0.9 after epochs 0, 10, 20..., ``w_kl`` x0.5 after 0, 30, ...).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from .kd_losses import kd_loss, standardize


def mutual_loss(logits: dict[str, Tensor], target: Tensor, temperature: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Stage 1: each network's CE plus T^2 KL(p_other || p_self) from every other network, nothing detached
    (so each KL term trains both of its networks), summed over the networks."""
    total, parts = logits[next(iter(logits))].new_zeros(()), {}
    for name, own in logits.items():
        ce = F.cross_entropy(own, target)
        kl = sum((kd_loss(own, other, temperature) for o, other in logits.items() if o != name), own.new_zeros(()))
        parts[f"co_ce_{name}"] = ce
        total = total + ce + kl
    return total, parts


def mask_fit_loss(masked: Tensor, student: Tensor, temperature: float) -> Tensor:
    """Stage 2: T^2 KL(p_student || p_masked), the student's logits a fixed target."""
    return kd_loss(masked, student.detach(), temperature)


def routed_kd(student: Tensor, teachers: Tensor, gate_probs: Tensor, k: int, temperature: float,
              lskd: bool = False) -> tuple[Tensor, Tensor]:
    """Stage 3: per sample, the ``k`` specialised teachers (``teachers``: B x E x C) with the highest gate
    probabilities; the mean over the k of T^2 KL(selected teacher || student), teachers detached. The
    selection is an index, so no gradient reaches the gate through it. Returns the loss and the B x k
    indices (``lskd``: both sides z-scored)."""
    top = gate_probs.topk(k, dim=1).indices
    chosen = teachers.detach().gather(1, top.unsqueeze(-1).expand(-1, -1, teachers.shape[-1]))
    s = standardize(student) if lskd else student
    loss = sum(kd_loss(s, standardize(chosen[:, i]) if lskd else chosen[:, i], temperature) for i in range(k)) / k
    return loss, top


def load_balance(gate_probs: Tensor, mode: str = "KL") -> Tensor:
    """Stage 3's balance term on the batch's mean gate probabilities m (E experts). "KL": the authors'
    ``nn.KLDivLoss(reduction="batchmean")(log m, uniform)``, whose batch-mean divides the E-vector's sum by E:
    (1/E) sum_e (1/E) (log(1/E) - log m_e). "CV": std / mean of the per-expert probability sums (unbiased std)."""
    if mode == "KL":
        mean = gate_probs.mean(dim=0)
        n = mean.numel()
        return ((1.0 / n) * (math.log(1.0 / n) - mean.log())).sum() / n
    importance = gate_probs.sum(dim=0)
    return importance.std() / importance.mean()


def stage3_weights(w_kl: float, w_lb: float, epoch: int) -> tuple[float, float]:
    """The KD and balance weights in stage 3's epoch ``epoch`` (from 0): the authors decay them at the end of
    every epoch whose index is a multiple of 30 (KD, x0.5) or 10 (balance, x0.9)."""
    return w_kl * 0.5 ** math.ceil(epoch / 30), w_lb * 0.9 ** math.ceil(epoch / 10)


def stage_ends(n_epochs: int, co_epochs: int, mask_epochs: int) -> tuple[int, int]:
    """The first epoch of stage 2 and of stage 3 in an ``n_epochs`` trial (the authors' ``--epochs_s1``,
    ``--epochs_s2``, then ``--epochs``): every stage keeps at least one epoch, so a budget too short for the
    stages asked shortens the longer of the first two."""
    co, mask = co_epochs, mask_epochs
    while co + mask > n_epochs - 1 and max(co, mask) > 1:
        if co >= mask:
            co -= 1
        else:
            mask -= 1
    return co, co + mask
