"""C2KD (Huo et al. CVPR 2024): bidirectional distillation between proxies, with on-the-fly selection of
the samples (Kendall rank correlation of the two proxies' logits above a threshold) and of the classes
(non-target classes only). Computed as the authors' ``train_network_distill`` (``huofushuo/C2KD``, AVE
``utils/helper.py``) does; pure functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .kd_losses import standardize
from .precision import full


def kendall_tau(a: Tensor, b: Tensor) -> Tensor:
    """Kendall's tau-b between the rows of ``a`` and ``b`` (B x C): (concordant - discordant) /
    sqrt(untied pairs in a * untied pairs in b), as ``scipy.stats.kendalltau`` (NaN for a constant row).
    The authors call scipy per sample on the CPU; this is the same number for the whole batch at once."""
    a, b = full(a.detach()), full(b.detach())
    i, j = torch.triu_indices(a.shape[1], a.shape[1], 1, device=a.device)
    da, db = torch.sign(a[:, i] - a[:, j]), torch.sign(b[:, i] - b[:, j])
    untied = (da != 0).sum(1).to(a.dtype) * (db != 0).sum(1).to(a.dtype)
    return (da * db).sum(1) / untied.sqrt()


def non_target(logits: Tensor, target: Tensor, mode: str = "zeroed") -> Tensor:
    """The logits the class-selective term compares. ``zeroed``: the authors' code (``logits * ~gt_mask``:
    the target logit set to 0 and kept in the softmax); ``removed``: the paper's non-target distribution
    (the C - 1 other logits alone)."""
    gt = F.one_hot(target, logits.shape[1]).bool()
    if mode == "zeroed":
        return logits.masked_fill(gt, 0.0)
    if mode == "removed":
        return logits[~gt].view(logits.shape[0], -1)
    raise ValueError(f"non_target mode must be 'zeroed' or 'removed', got {mode!r}")


def non_target_kl(student: Tensor, teacher: Tensor, target: Tensor, mask: Tensor, mode: str = "zeroed") -> Tensor:
    """mean over the batch of mask_i * KL(softmax(t_nt) || softmax(s_nt)) at T = 1 (the authors' ``ntkl``:
    masked-out samples count in the mean's denominator); ``teacher`` is detached here."""
    log_ps = F.log_softmax(non_target(student, target, mode), dim=1)
    log_pt = F.log_softmax(non_target(teacher.detach(), target, mode), dim=1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(1)
    return (mask * kl).mean()


def kl_to(student: Tensor, teacher: Tensor) -> Tensor:
    """KL(softmax(teacher) || softmax(student)), batch mean, T = 1, ``teacher`` detached (``KLDivLoss
    (reduction='batchmean')`` as the authors use it)."""
    log_ps = F.log_softmax(student, dim=1)
    log_pt = F.log_softmax(teacher.detach(), dim=1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(1).mean()


def c2kd_loss(student: Tensor, teacher: Tensor, student_proxy: Tensor, teacher_proxy: Tensor, target: Tensor,
              krc: float = 0.0, mode: str = "zeroed", lskd: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
    """The authors' total: for each side X (teacher, student) CE(X) + KL(X -> proxy_X) + KL(proxy_X -> X)
    (each learns from the other, the source detached), plus the bidirectional proxy terms on the selected
    samples (Kendall tau of the proxies' logits > ``krc``) and non-target classes:
    ntKL(proxy_S <- proxy_T) + ntKL(proxy_T <- proxy_S). With ``lskd`` the two cross-modal proxy terms
    compare z-scored logits (the selection still ranks the raw ones; ranks do not change)."""
    tau = kendall_tau(teacher_proxy, student_proxy)
    mask = (tau > krc).to(tau.dtype)
    ce_t, ce_s = F.cross_entropy(teacher, target), F.cross_entropy(student, target)
    self_t = kl_to(teacher_proxy, teacher) + kl_to(teacher, teacher_proxy)
    self_s = kl_to(student_proxy, student) + kl_to(student, student_proxy)
    sp, tp = (standardize(student_proxy), standardize(teacher_proxy)) if lskd else (student_proxy, teacher_proxy)
    s_from_t = non_target_kl(sp, tp, target, mask, mode)  # 0 when no sample is selected, as the authors' branch
    t_from_s = non_target_kl(tp, sp, target, mask, mode)
    total = ce_t + self_t + t_from_s + ce_s + self_s + s_from_t
    return total, {"ce": ce_s, "ce_teacher": ce_t, "self_teacher": self_t, "self_student": self_s,
                   "kd_to_student": s_from_t, "kd_to_teacher": t_from_s, "selected": mask.mean()}
