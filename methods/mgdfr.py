"""MGDFR (Xue et al., ICLR 2023): co-train a copy of the teacher with a student, score the teacher's
pooled-feature channels by permutation, then distil a fresh student from the co-trained teacher with its
modality-specific channels frozen (:mod:`cmkd.methods.mgdfr_losses`).

Defaults from MST-Distill's ``main-MGDFR.py``: ``--ratio 0.75`` (line 43: removed share), ``--alpha 0.5``
(line 45: KD weight; CE gets 1 - alpha), ``--repeat_permute 10`` (line 59), KD at T 4
(``KD_methods/KD.py`` line 5), and as many co-training as distillation epochs (``--co_epochs 100``,
``--epochs 100``: lines 55, 57): ``co_share`` 0.5 of the trial's epochs, at least one of each, so a trial
needs 2 epochs or more. The scored feature is the
teacher's pooled vector (fused, for the multi-modal teacher), the one its linear head reads (MFH and
MST-Distill hook a late feature layer of their own networks). The salience pass runs once, between the
two stages, over the training split (the engine's ``data_pass``) and lives in buffers, so a resumed trial
keeps it. Not theirs: the co-training uses the protocol's optimiser (theirs: SGD 1e-3, momentum 0.9), as
every method here does. The co-trained copies are never exported; the loaded teacher is never modified.
``--lskd`` z-scores both logits in the stage-3 KD term.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .backbones import POOL, Classifier, build_teacher_network, encoder_for, teacher_feature_dim
from .base import Batch, DataInfo
from .distill import TEMPERATURE, DistilledStudent, DistillOptions
from .kd_losses import kd_loss, standardize
from .mgdfr_losses import co_training_loss, freeze_channels, keep_mask, permutation_mse
from .options import option
from .registry import register_method
from .precision import full


@dataclass(frozen=True)
class MGDFROptions(DistillOptions):
    alpha: float = option(0.5, "weight of the KD term; CE gets 1 - alpha (--alpha)", low=0, high=1)
    temperature: float = option(4.0, "KD temperature (KD.py's T)", **TEMPERATURE)
    ratio: float = option(0.75, "share of the teacher's channels removed (--ratio)", low=0, high=1, high_open=True)
    repeats: int = option(10, "shuffles per channel in the salience pass (--repeat_permute)", low=1)
    co_share: float = option(0.5, "share of the trial's epochs spent co-training (--co_epochs of co + epochs)",
                             low=0, high=1, low_open=True, high_open=True)


@register_method("mgdfr")
class MGDFR(DistilledStudent):
    description = "MGDFR: co-train, score teacher channels by permutation, KD with modality-specific channels frozen"
    label = "MGDFR"
    Options = MGDFROptions
    min_epochs = 2  # a co-training stage, then a distillation one

    def __init__(self, info, modality, options, teacher=None, teacher_kind=None):
        super().__init__(info, modality, options, teacher, teacher_kind)
        kind = teacher_kind or "cross-modal"
        net = copy.deepcopy(teacher) if teacher is not None else build_teacher_network(info, kind)
        self.co_teacher = net.requires_grad_(True)  # ours to train; the loaded teacher stays as it is
        self.co_student = Classifier(encoder_for(info, modality), info.n_classes)
        width = teacher_feature_dim(info, kind)
        self.register_buffer("salience", torch.zeros(width))
        self.register_buffer("keep", torch.ones(width, dtype=torch.bool))
        self.co_epochs = 1

    @classmethod
    def epoch_cost(cls, info: DataInfo) -> float:
        return 1.8  # co-training: a teacher and a student step; then a KD step

    def on_epoch_start(self, epoch: int, n_epochs: int) -> None:
        self.co_epochs = min(max(round(self.options.co_share * n_epochs), 1), n_epochs - 1)

    def wants_data_pass(self, epoch: int, n_epochs: int) -> bool:
        return epoch == self.co_epochs

    def _teacher_features(self, x):
        logits, feats = self.co_teacher.forward_features(self.teacher_input(x), (POOL,))
        return logits, feats[POOL]

    def data_pass(self, batches) -> None:
        total, count = torch.zeros_like(self.salience), 0
        for batch in batches:
            _, feats = self._teacher_features(batch.x)
            student = self.co_student(batch.x[self.modality])
            total += permutation_mse(full(feats), self.co_teacher.head, full(student),
                                     repeats=self.options.repeats) * len(student)
            count += len(student)
        self.salience.copy_(total / count)
        self.keep.copy_(keep_mask(self.salience, self.options.ratio))

    def loss(self, batch: Batch, epoch: int):
        target = batch.labels(self.modality)
        if epoch < self.co_epochs:
            return co_training_loss(full(self.co_teacher(self.teacher_input(batch.x))),
                                    full(self.co_student(batch.x[self.modality])), target)
        o = self.options
        self.co_teacher.eval()
        with torch.no_grad():
            _, feats = self._teacher_features(batch.x)
            t = full(self.co_teacher.head(freeze_channels(feats, self.keep)))
        s = full(self.net(batch.x[self.modality]))
        ce = F.cross_entropy(s, target)
        kd = kd_loss(standardize(s), standardize(t), o.temperature) if o.lskd else kd_loss(s, t, o.temperature)
        return (1 - o.alpha) * ce + o.alpha * kd, {"ce": ce, "kd": kd}

    def epoch_metrics(self) -> dict[str, float]:
        return {"kept_channels": float(self.keep.sum())}
