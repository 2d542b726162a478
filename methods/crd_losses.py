"""Contrastive representation distillation (Tian et al. ICLR 2020): the NCE loss over a memory bank of
embeddings, as the authors' RepDistiller code (and mdistiller, unchanged) computes it. Pure functions;
the bank itself lives in :class:`cmkd.methods.crd.CRD`."""

from __future__ import annotations

import torch
from torch import Tensor


def contrast_scores(bank: Tensor, embedding: Tensor, contrast_idx: Tensor, temperature: float) -> Tensor:
    """exp(<bank[j], v> / T) for each sample's K + 1 bank rows ``contrast_idx`` (B x (K+1), the
    positive first): B x (K+1), unnormalised. The bank is constant (no gradient reaches it).

    The reference gathers B x (K+1) x D bank rows and multiplies; when K is a good part of the bank (any
    data set short of ~8 x 16384 training samples) one B x n product with the whole bank, then picking the
    K + 1 scores, is the same numbers at a fraction of the memory traffic."""
    bank = bank.detach()
    if 8 * contrast_idx.shape[1] >= bank.shape[0]:
        dots = torch.gather(embedding @ bank.t(), 1, contrast_idx)
    else:
        dots = torch.bmm(bank[contrast_idx], embedding.unsqueeze(2)).squeeze(2)
    return torch.exp(dots / temperature)


def nce_loss(scores: Tensor, n_data: int, eps: float = 1e-7) -> Tensor:
    """NCE with K noise samples from the uniform distribution Pn = 1 / n_data over the bank:
    -(1/B) sum_i [log h(pos_i) + sum_k log(1 - h(neg_ik))], h(x) = x / (x + K Pn), ``scores`` already
    divided by the normalising constant Z (column 0 the positive). ``eps`` as the reference code."""
    m = scores.shape[1] - 1
    noise = m / float(n_data)
    pos, neg = scores[:, 0], scores[:, 1:]
    log_d1 = torch.log(pos / (pos + noise + eps))
    log_d0 = torch.log(noise / (neg + noise + eps))
    return -(log_d1.sum() + log_d0.sum()) / scores.shape[0]


def momentum_update(rows: Tensor, embedding: Tensor, momentum: float) -> Tensor:
    """A bank row's new value: momentum * old + (1 - momentum) * new embedding, L2-normalised."""
    mixed = rows * momentum + embedding.detach() * (1 - momentum)
    return mixed / mixed.pow(2).sum(1, keepdim=True).sqrt()


def negatives_per_sample(labels: Tensor, k: int) -> int:
    """The number of negatives each sample draws: the reference's K, capped by the smallest pool of
    other-class samples (a tiny data set has fewer than 16384), so that every draw is without
    replacement as the reference's is whenever its pool is large enough."""
    counts = torch.bincount(labels)
    pool = int(len(labels) - counts.max())
    if pool < 1:
        raise ValueError("CRD needs samples of at least two classes in the training split")
    return min(int(k), pool)


def sample_negatives(labels: Tensor, targets: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """B x k bank positions of samples whose class differs from ``targets`` (the reference's "exact"
    mode), drawn uniformly without replacement: the k smallest of i.i.d. uniform keys, same-class
    samples keyed past every other (k never exceeds the other-class pool: :func:`negatives_per_sample`)."""
    keys = torch.rand(len(targets), len(labels), generator=generator, device=labels.device)
    keys = keys.masked_fill(labels.unsqueeze(0) == targets.unsqueeze(1), 2.0)
    return keys.topk(k, dim=1, largest=False, sorted=False).indices
