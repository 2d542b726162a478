"""Pure logit-distillation losses: tensors in, tensor out. Verified against ``kd-methods.md`` section 7.

Conventions: ``student`` and ``teacher`` are B x C logits (the teacher's detached), KL is
KL(teacher || student) summed over classes and averaged over the batch ("batchmean"), and the
Hinton T^2 factor is applied where the original methods apply it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from .precision import full


# ---- LSKD (logit standardisation, Sun et al. CVPR 2024) ----------------------------------------
def standardize(logits: Tensor, eps: float = 1e-7) -> Tensor:
    """Per-row z-score with the *unbiased* std (C - 1), eps added to the std: the LSKD transform."""
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True, unbiased=True)
    return (logits - mean) / (std + eps)


# ---- Hinton KD -----------------------------------------------------------------------------------
def kl_per_sample(student: Tensor, teacher: Tensor, temperature: float | Tensor) -> Tensor:
    """KL(softmax(t/T) || softmax(s/T)) per sample, without T^2 (log-probabilities for the student)."""
    log_ps = F.log_softmax(student / temperature, dim=1)
    log_pt = F.log_softmax(teacher / temperature, dim=1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(dim=1)


def kd_loss(student: Tensor, teacher: Tensor, temperature: float | Tensor = 4.0) -> Tensor:
    """Hinton KD: T^2 * batch-mean KL."""
    return (temperature ** 2) * kl_per_sample(student, teacher, temperature).mean()


def hinton_loss(student: Tensor, teacher: Tensor, target: Tensor, alpha: float, temperature: float,
                lskd: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
    """KDv1 / KDv2: alpha * CE + (1 - alpha) * KD; CE always on the raw student logits."""
    ce = F.cross_entropy(student, target)
    s, t = (standardize(student), standardize(teacher)) if lskd else (student, teacher)
    kd = kd_loss(s, t, temperature)
    return alpha * ce + (1 - alpha) * kd, {"ce": ce, "kd": kd}


# ---- DKD (Zhao et al. CVPR 2022) ---------------------------------------------------------------------
def dkd_terms(student: Tensor, teacher: Tensor, target: Tensor, temperature: float | Tensor = 4.0) -> tuple[Tensor, Tensor]:
    """(TCKD, NCKD), each with T^2 and batch-mean.

    NCKD is computed on the gathered C - 1 non-target columns (not the "-1000" masking trick), so a
    learnable temperature never meets log(0) (the CTKD + DKD NaN).
    """
    B, C = student.shape
    gt = F.one_hot(target, C).bool()
    ps = F.softmax(student / temperature, dim=1)
    pt = F.softmax(teacher / temperature, dim=1)
    bs = torch.stack([ps[gt], ps[~gt].view(B, C - 1).sum(1)], dim=1)
    bt = torch.stack([pt[gt], pt[~gt].view(B, C - 1).sum(1)], dim=1)
    # xlogy: a teacher probability that underflows to 0 (a logit gap over ~104 T in float32) adds 0, not NaN
    tckd = (torch.xlogy(bt, bt) - bt * bs.log()).sum(1).mean() * temperature ** 2
    s_nt = student[~gt].view(B, C - 1)
    t_nt = teacher[~gt].view(B, C - 1)
    nckd = kd_loss(s_nt, t_nt, temperature)
    return tckd, nckd


def dkd_loss(student: Tensor, teacher: Tensor, target: Tensor, alpha: float = 1.0, beta: float = 8.0,
             temperature: float | Tensor = 4.0) -> Tensor:
    tckd, nckd = dkd_terms(student, teacher, target, temperature)
    return alpha * tckd + beta * nckd


def dkd_warmup(epoch: int, warmup: int, count_from_one: bool = False) -> float:
    """Weight of the DKD term: min(e / W, 1). The DisCoM-KD authors count e from 0 (first epoch: 0);
    mdistiller counts from 1 (first epoch: 1/W)."""
    e = epoch + 1 if count_from_one else epoch
    return min(e / warmup, 1.0) if warmup > 0 else 1.0


# ---- CTKD (Li et al. AAAI 2023): global learnable temperature through a GRL ---------------------------
class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, lam: float) -> Tensor:  # type: ignore[override]
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return -ctx.lam * grad, None


def grad_reverse(x: Tensor, lam: float = 1.0) -> Tensor:
    """Identity forward; gradient multiplied by -lam backward (Ganin et al. 2016)."""
    return _ReverseGrad.apply(x, lam)


def ctkd_temperature(theta: Tensor, lam: float, t_start: float = 1.0, t_range: float = 20.0) -> Tensor:
    """T = t_start + t_range * sigmoid(GRL_lam(theta)): theta is pushed to *increase* the KD loss."""
    return t_start + t_range * torch.sigmoid(grad_reverse(theta, lam))


def ctkd_lambda(epoch: int, loops: int) -> float:
    """Cosine curriculum 0 -> 1 over ``loops`` epochs, then 1 (the paper's easy-to-hard ramp).

    ``epoch`` is the count the caller chose (0-based as the DisCoM-KD authors, 1-based as CTKD)."""
    n = min(epoch, loops)
    return 0.5 * (1 - math.cos(math.pi * n / loops)) if loops > 0 else 1.0


# ---- MLKD (Jin et al. CVPR 2023) ----------------------------------------------------------------------
def class_correlation_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """(1/C) || Qt^T Qt - Qs^T Qs ||_F^2 on softened predictions (no T^2)."""
    qs, qt = F.softmax(student / temperature, 1), F.softmax(teacher / temperature, 1)
    return ((qt.T @ qt - qs.T @ qs) ** 2).sum() / student.shape[1]


def batch_correlation_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """(1/B) || Qt Qt^T - Qs Qs^T ||_F^2 on softened predictions (no T^2)."""
    qs, qt = F.softmax(student / temperature, 1), F.softmax(teacher / temperature, 1)
    return ((qt @ qt.T - qs @ qs.T) ** 2).sum() / student.shape[0]


def mlkd_confidence_masks(teacher_weak: Tensor) -> tuple[Tensor, Tensor]:
    """Sample mask m (confidence <= median) and class mask n (class mass <= median), teacher at T = 1.

    ``torch.quantile`` interpolates linearly like numpy's percentile; ``torch.median`` would not.
    """
    p = F.softmax(full(teacher_weak.detach()), dim=1)
    conf = p.max(dim=1).values
    m = (conf <= torch.quantile(conf, 0.5)).float()
    k = p.sum(dim=0)
    n = (k <= torch.quantile(k, 0.5)).float()
    return m, n


def mlkd_temperatures(t0: float) -> list[float]:
    return [t0, 3.0, 5.0, 2.0, 6.0]


def mlkd_loss(s_weak: Tensor, t_weak: Tensor, s_strong: Tensor, t_strong: Tensor, target: Tensor,
              t0: float = 4.0, ce_weight: float = 0.1, kd_weight: float = 0.9, lskd: bool = False,
              ) -> tuple[Tensor, dict[str, Tensor]]:
    """MLKD as its reference code computes it (the V4 "reference code" reading).

    Quirks kept on purpose (they are what MLKD's published numbers measured): masks only scale each
    term by the selected fraction; the strong-view KD at T = 2 and 6 uses the weak logits; strong-view
    class/batch terms are not added. With ``lskd`` only the instance-level KD terms see
    standardised logits (as in the LSKD repository).
    """
    m, n = mlkd_confidence_masks(t_weak)
    mbar, nbar = m.mean(), n.mean()
    temps = mlkd_temperatures(t0)
    z = standardize if lskd else (lambda v: v)
    sw, tw, ss, ts = z(s_weak), z(t_weak), z(s_strong), z(t_strong)
    loss_ce = ce_weight * (F.cross_entropy(s_weak, target) + F.cross_entropy(s_strong, target))
    kd_weak = kd_weight * sum(mbar * kd_loss(sw, tw, T) for T in temps)
    strong_pairs = [(ss, ts, temps[0]), (ss, ts, 3.0), (ss, ts, 5.0), (sw, tw, 2.0), (sw, tw, 6.0)]
    kd_strong = kd_weight * sum(kd_loss(a, b, T) for a, b, T in strong_pairs)
    loss_cc = kd_weight * sum(nbar * class_correlation_loss(s_weak, t_weak, T) for T in temps)
    loss_bc = kd_weight * sum(mbar * batch_correlation_loss(s_weak, t_weak, T) for T in temps)
    total = loss_ce + kd_weak + kd_strong + loss_cc + loss_bc
    return total, {"ce": loss_ce, "kd": kd_weak + kd_strong, "kd_weak": kd_weak, "kd_strong": kd_strong,
                   "cc": loss_cc, "bc": loss_bc}


def mlkd_discomkd_code_loss(student: Tensor, teacher: Tensor, target: Tensor, lskd: bool = False,
                            temperatures: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 6.0)) -> tuple[Tensor, dict[str, Tensor]]:
    """The DisCoM-KD authors' MLKD re-write (``kd_losses.py`` of their repository history).

    One view, no masks, no T^2. Per temperature: an "instance" term that hands probabilities where
    log-probabilities belong (PyTorch ``kl_div(input=p_t, target=p_s)``, mean over B*C:
    mean of p_s * (log p_s - p_t)), a batch term ||G_s - G_t||^2 / B and a class term
    ||M_s - M_t||^2 / C. Loss = CE (raw logits) + the sum. With ``lskd`` every term sees z-scored logits.
    """
    ce = F.cross_entropy(student, target)
    s, t = (standardize(student), standardize(teacher)) if lskd else (student, teacher)
    ins = bat = cla = torch.zeros((), device=student.device)
    for T in temperatures:
        ps, pt = F.softmax(s / T, 1), F.softmax(t / T, 1)
        ins = ins + (ps * (ps.clamp_min(1e-30).log() - pt)).mean()
        bat = bat + batch_correlation_loss(s, t, T)
        cla = cla + class_correlation_loss(s, t, T)
    return ce + ins + bat + cla, {"ce": ce, "instance": ins, "bc": bat, "cc": cla}
