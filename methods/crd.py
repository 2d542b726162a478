"""CRD (Tian et al. ICLR 2020): contrastive representation distillation. The student's and the
teacher's penultimate features are embedded (linear + L2 norm) and each is pulled towards the other
network's memory-bank entry of the same sample and pushed from K entries of other samples (NCE).

Defaults and their sources (RepDistiller, the authors' code; mdistiller's ``CRD`` config is the same):
embedding dimension 128, K = 16384 negatives, NCE temperature 0.07, bank momentum 0.5, CE weight 1 and
CRD weight 0.8, negatives drawn from samples of *other classes* (``CRD.MODE = "exact"``), the bank
initialised uniformly in +-1/sqrt(dim/3), the NCE normalising constant Z fixed from the first batch.

Sized to the data set: the bank holds one entry per training sample of this trial's split (CIFAR-100
has 50,000; our data sets have hundreds to thousands), and each sample draws
min(K, smallest pool of other-class samples) negatives without replacement (the reference draws 16384
from ~49,500), so tiny data sets run with every other-class sample as a negative.

The multi-modal teacher's features are its fused (summed) vector. The bank and both embedding heads are
trained state (checkpointed) and never part of the exported student. No logit KD term: there is nothing
for LSKD to standardise, so the method has no ``lskd`` option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import POOL, teacher_feature_dim
from .base import DataInfo, MethodOptions
from .crd_losses import contrast_scores, momentum_update, negatives_per_sample, nce_loss, sample_negatives
from .distill import WEIGHT, DistilledStudent, FeatureOptions
from .options import option
from .registry import register_method
from .precision import full


@dataclass(frozen=True)
class CRDOptions(FeatureOptions):
    feat_dim: int = option(128, "embedding dimension of both heads (the authors' 128)", low=1)
    nce_k: int = option(16384, "negatives per sample (the authors' 16384; capped by the data set, see the docstring)",
                        low=1)
    nce_t: float = option(0.07, "NCE temperature (the authors' 0.07)", low=0, low_open=True)
    momentum: float = option(0.5, "memory-bank momentum (the authors' 0.5)", low=0, high=1, high_open=True)
    ce_weight: float = option(1.0, "weight of CE on labels", **WEIGHT)
    crd_weight: float = option(0.8, "weight of the CRD loss (the authors' 0.8)", **WEIGHT)


class Embed(nn.Module):
    """Linear projection onto the unit sphere (the authors' ``Embed``)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.linear(x.flatten(1)), dim=1)


@register_method("crd")
class CRD(DistilledStudent):
    description = "Contrastive representation distillation: embeddings, memory bank of other-class negatives, NCE, + CE"
    label = "CRD"
    Options = CRDOptions
    feature_stages = (POOL,)

    def __init__(self, info: DataInfo, modality: str | None, options: MethodOptions, teacher: nn.Module | None = None,
                 teacher_kind: str | None = None):
        super().__init__(info, modality, options, teacher, teacher_kind)
        self.embed_student = Embed(self.net.encoder.feature_dim, self.options.feat_dim)
        self.embed_teacher = Embed(teacher_feature_dim(info, teacher_kind or "cross-modal"), self.options.feat_dim)
        self.k = 0  # set with the bank

    @classmethod
    def epoch_cost(cls, info: DataInfo) -> float:
        return 1.4

    def on_train_split(self, labels: Tensor) -> None:
        """One bank entry per training sample, for the student's and the teacher's embeddings."""
        n, dim = len(labels), self.options.feat_dim
        self.k = negatives_per_sample(labels.long(), self.options.nce_k)
        std = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("bank_labels", labels.long().clone())
        self.register_buffer("bank_student", torch.rand(n, dim).mul_(2 * std).add_(-std))
        self.register_buffer("bank_teacher", torch.rand(n, dim).mul_(2 * std).add_(-std))
        self.register_buffer("z", torch.tensor([-1.0, -1.0]))  # NCE normalising constants, set at the first step

    def distill_features(self, student, teacher, student_features, teacher_features, batch, epoch):
        if batch.index is None or not hasattr(self, "bank_labels"):
            raise RuntimeError("crd needs paired batches with sample positions and on_train_split(); the engine gives both")
        o, idx, y = self.options, batch.index, batch.labels(self.modality)
        contrast_idx = torch.cat([idx.unsqueeze(1), sample_negatives(self.bank_labels, self.bank_labels[idx], self.k)], 1)
        v_s = self.embed_student(full(student_features[POOL]))
        v_t = self.embed_teacher(teacher_features[POOL])
        n = len(self.bank_labels)
        scores_s = contrast_scores(self.bank_teacher, v_s, contrast_idx, o.nce_t)  # student vs the teacher's bank
        scores_t = contrast_scores(self.bank_student, v_t, contrast_idx, o.nce_t)
        with torch.no_grad():
            if self.z[0] < 0:  # as the reference: Z = mean score * bank size, once, from the first batch
                self.z.copy_(torch.stack([scores_s.mean(), scores_t.mean()]) * n)
            # out of place: this step's scores hold the banks as they were for the backward pass
            self.bank_student = self.bank_student.index_copy(0, idx, momentum_update(self.bank_student[idx], v_s, o.momentum))
            self.bank_teacher = self.bank_teacher.index_copy(0, idx, momentum_update(self.bank_teacher[idx], v_t, o.momentum))
        crd = nce_loss(scores_s / self.z[0], n) + nce_loss(scores_t / self.z[1], n)
        ce = F.cross_entropy(student, y)
        return o.ce_weight * ce + o.crd_weight * crd, {"ce": ce, "crd": crd}
