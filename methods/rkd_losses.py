"""Relational KD (Park et al. CVPR 2019): distance-wise and angle-wise losses on embeddings, as the
authors' code and mdistiller compute them. Pure functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def pairwise_distances(e: Tensor, squared: bool = False, eps: float = 1e-12) -> Tensor:
    """B x B Euclidean distances of the rows of ``e`` (squared distances clamped at ``eps`` before the
    root, so that the gradient is finite); the diagonal is exactly 0."""
    sq = e.pow(2).sum(1)
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps)
    if not squared:
        d = d.sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=d.dtype))


def normalised_distances(e: Tensor, squared: bool = False, eps: float = 1e-12) -> Tensor:
    """Distances divided by their mean over the pairs of distinct samples (RKD's mu): the loss compares
    the *shape* of the two embeddings, not their scale."""
    d = pairwise_distances(e, squared, eps)
    return d / d[d > 0].mean()


def rkd_distance_loss(student: Tensor, teacher: Tensor, squared: bool = False, eps: float = 1e-12) -> Tensor:
    """Huber (smooth L1, beta 1, mean over the B x B entries) between the normalised distance matrices."""
    s, t = student.flatten(1), teacher.flatten(1).detach()
    return F.smooth_l1_loss(normalised_distances(s, squared, eps), normalised_distances(t, squared, eps))


def triplet_cosines(e: Tensor) -> Tensor:
    """cos of the angle at j between samples i and k: <(e_i - e_j)/|.|, (e_k - e_j)/|.|> for every
    (j, i, k), flattened (B^3 values; 0 where a difference vector is zero, as ``F.normalize`` gives).

    The reference normalises the B x B x D difference vectors and multiplies them (B^3 D work: 2.5x a
    ResNet-18 step at batch 128 on a CPU); every inner product of differences is a sum of four entries of
    the B x B Gram matrix, <e_i - e_j, e_k - e_j> = G_ik - G_ji - G_jk + G_jj, so the same cosines cost
    B^2 D + B^3. Centred first (translation changes no difference), so that the cancellation in the sum
    stays at the rounding of the spread, not of the features' magnitude: in float32 the cosines are
    closer to a float64 computation than the reference's own float32 ones."""
    x = e - e.mean(0, keepdim=True)
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    g = x @ x.t()
    d = g.diagonal()
    sq = (d.unsqueeze(0) + d.unsqueeze(1) - 2 * g).clamp(min=0)  # |e_i - e_j|^2
    tiny = torch.finfo(x.dtype).tiny
    # i == j, or samples that coincide to rounding: a difference without a direction (cosine 0)
    zero = sq <= 16 * torch.finfo(x.dtype).eps * (d.unsqueeze(0) + d.unsqueeze(1)).clamp(min=tiny)
    inv = torch.where(zero, torch.zeros_like(sq), sq.clamp(min=tiny).rsqrt())  # 1 / |e_i - e_j|
    inner = g.unsqueeze(0) - g.unsqueeze(2) - g.unsqueeze(1) + d.view(-1, 1, 1)  # [j, i, k]
    return (inner * inv.unsqueeze(2) * inv.unsqueeze(1)).to(e.dtype).reshape(-1)


def rkd_angle_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Huber (smooth L1, mean over the B^3 triplets) between the two embeddings' triplet cosines."""
    return F.smooth_l1_loss(triplet_cosines(student.flatten(1)), triplet_cosines(teacher.flatten(1).detach()))


def rkd_loss(student_logits: Tensor, target: Tensor, student: Tensor, teacher: Tensor, ce_weight: float = 1.0,
             distance_weight: float = 25.0, angle_weight: float = 50.0, squared: bool = False,
             eps: float = 1e-12) -> tuple[Tensor, dict[str, Tensor]]:
    """ce_weight * CE + distance_weight * L_D + angle_weight * L_A."""
    ce = F.cross_entropy(student_logits, target)
    dist = rkd_distance_loss(student, teacher, squared, eps)
    angle = rkd_angle_loss(student, teacher)
    return ce_weight * ce + distance_weight * dist + angle_weight * angle, {"ce": ce, "distance": dist, "angle": angle}
