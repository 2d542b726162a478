"""DisCoM-KD's loss terms as pure functions (Ienco & Fraga Dantas 2024), summed over modalities.

Shapes: dicts keyed by modality (in a fixed order: the modality's index is its position), each value
B_m x ... . The modality label of modality m is its index m.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MODALITY_TARGETS = ("index", "official")
PERP_MODES = ("signed", "absolute")
#: how a term combines its per-modality means: ``sum`` (the paper's sum over modalities) or
#: ``concat-mean`` (the released code: the modalities' rows concatenated, one mean per term)
REDUCTIONS = ("sum", "concat-mean")


def combine(values: list[Tensor], rows: list[int], reduction: str = "sum") -> Tensor:
    """Per-part means -> one term: their sum, or the mean over all rows of the concatenated parts."""
    if reduction == "sum":
        return sum(values)  # type: ignore[return-value]
    if reduction == "concat-mean":
        return sum(v * n for v, n in zip(values, rows)) / sum(rows)  # type: ignore[return-value]
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _rows(d: dict[str, Tensor]) -> list[int]:
    return [int(v.shape[0]) for v in d.values()]


def classification_loss(logits: dict[str, Tensor], labels: dict[str, Tensor], reduction: str = "sum") -> Tensor:
    """L_cl = sum_m CE(Cl_m([z_inv || z_inf]), y)."""
    return combine([F.cross_entropy(logits[m], labels[m]) for m in logits], _rows(logits), reduction)


def modality_ce(logits: Tensor, index: int, targets: str = "index") -> Tensor:
    """Cross-entropy of a modality classifier's B x M logits for rows of modality ``index``.

    ``index``: the paper's integer modality labels. ``official``: the released code's targets,
    ``ones_like`` for the first modality and ``zeros_like`` for the others, taken by PyTorch as
    class-probability targets: -sum_c log p_c for the first modality's rows (minimised by a uniform
    prediction), 0 for the others. So that code trains no real modality classifier.
    """
    if targets == "index":
        return F.cross_entropy(logits, torch.full((logits.shape[0],), index, dtype=torch.long, device=logits.device))
    if targets == "official":
        soft = torch.ones_like(logits) if index == 0 else torch.zeros_like(logits)
        return F.cross_entropy(logits, soft)
    raise ValueError(f"modality targets must be one of {MODALITY_TARGETS}, got {targets!r}")


def adversarial_loss(disc_logits: dict[str, Tensor], targets: str = "index", reduction: str = "sum") -> Tensor:
    """L_adv = sum_m CE(Cl_adv(GRL(z_inv_m)), m); the GRL sits in the model, before the discriminator."""
    return combine([modality_ce(v, i, targets) for i, v in enumerate(disc_logits.values())], _rows(disc_logits),
                   reduction)


def modality_loss(inf_logits: dict[str, Tensor], irr_logits: dict[str, Tensor], targets: str = "index",
                  reduction: str = "sum") -> Tensor:
    """L_mod = sum_m CE(Cl_m-inf(z_inf_m), m) + sum_m CE(Cl_m-irr(z_irr_m), m).

    ``concat-mean`` (the released code) takes one mean over all 2M parts' rows, so relative to the
    other terms L_mod weighs half as much as the paper's sum."""
    values, rows = [], []
    for i, m in enumerate(inf_logits):
        values += [modality_ce(inf_logits[m], i, targets), modality_ce(irr_logits[m], i, targets)]
        rows += [int(inf_logits[m].shape[0]), int(irr_logits[m].shape[0])]
    return combine(values, rows, reduction)


def auxiliary_loss(aux_inv: dict[str, Tensor], aux_inf: dict[str, Tensor], labels: dict[str, Tensor],
                   reduction: str = "sum") -> Tensor:
    """L_aux = sum_m [CE(Cl_aux(z_inv_m), y) + CE(Cl_aux(z_inf_m), y)]."""
    inv = combine([F.cross_entropy(aux_inv[m], labels[m]) for m in aux_inv], _rows(aux_inv), reduction)
    inf = combine([F.cross_entropy(aux_inf[m], labels[m]) for m in aux_inf], _rows(aux_inf), reduction)
    return inv + inf


def mean_cosine(a: Tensor, b: Tensor, absolute: bool = False) -> Tensor:
    c = F.cosine_similarity(a, b, dim=1, eps=1e-8)
    return (c.abs() if absolute else c).mean()


def orthogonality_loss(z_inv: dict[str, Tensor], z_inf: dict[str, Tensor], z_irr: dict[str, Tensor],
                       mode: str = "signed", reduction: str = "sum") -> Tensor:
    """L_perp = sum_m cos(z_inv_m, z_inf_m) + sum_m cos(z_inf_m, z_irr_m), averaged over the batch.

    ``signed`` (paper and code): minimising pushes the cosines towards -1. ``absolute``: towards 0,
    i.e. orthogonality as the cited POEM paper means it.
    """
    if mode not in PERP_MODES:
        raise ValueError(f"perp mode must be one of {PERP_MODES}, got {mode!r}")
    ab = mode == "absolute"
    rows = _rows(z_inv)
    return (combine([mean_cosine(z_inv[m], z_inf[m], ab) for m in z_inv], rows, reduction)
            + combine([mean_cosine(z_inf[m], z_irr[m], ab) for m in z_inv], rows, reduction))
