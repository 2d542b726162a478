"""What every logit-distillation student shares: one encoder (``--arch``) on its modality, a frozen teacher.

A subclass declares its options and computes ``distill(student_logits, teacher_logits, batch, epoch)``
with the pure functions of :mod:`cmkd.methods.kd_losses`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from .backbones import Classifier, encoder_for
from .base import Batch, DataInfo, Method, MethodOptions, teacher_logits
from .options import option
from .precision import full


@dataclass(frozen=True)
class DistillOptions(MethodOptions):
    lskd: bool = option(False, "logit standardisation (LSKD) inside the KD loss, same temperatures and weights")
    teacher_train_mode: bool = option(False, "the DisCoM-KD authors' quirk: teacher BatchNorm on batch statistics")


@dataclass(frozen=True)
class FeatureOptions(MethodOptions):
    """Options of a student without a logit KD term: no ``lskd`` (the plan runs no LSKD variant of it and
    ``cmkd train --lskd`` refuses it), the teacher's BatchNorm mode as for the logit students."""

    teacher_train_mode: bool = option(False, "the DisCoM-KD authors' quirk: teacher BatchNorm on batch statistics")


#: the bounds most KD options share
TEMPERATURE = {"low": 0, "high": 100, "low_open": True}
WEIGHT = {"low": 0}


class DistilledStudent(Method):
    """One student network on its modality (``DataInfo.arch``) and a frozen teacher (``teacher_arch``).

    Feature-level methods set ``feature_stages`` (cross-family names from ``backbones.STAGES``: ``stage1``..``stage4``, ``pool``) and implement
    :meth:`distill_features`, which receives the student's and the teacher's features of those stages
    (the multi-modal teacher's are fused: summed over modalities). Extra trainable modules (regressors,
    projectors, memory banks) are ordinary attributes: the optimiser trains them, checkpoints hold them,
    and they never reach the exported model (``export`` returns the student network alone).
    """

    teacher_kinds: ClassVar[tuple[str, ...]] = ("cross-modal", "multi-modal")
    single_modality = True
    joint_augmentation = True  # teacher and student see the same flips/rotation of a sample
    feature_stages: ClassVar[tuple[str, ...]] = ()

    def __init__(self, info: DataInfo, modality: str | None, options: MethodOptions, teacher: nn.Module | None = None,
                 teacher_kind: str | None = None):
        super().__init__(info, modality, options, teacher, teacher_kind)
        assert modality is not None
        self.net = Classifier(encoder_for(info, modality), info.n_classes)

    @classmethod
    def variant(cls, options: MethodOptions) -> str:
        return "lskd" if getattr(options, "lskd", False) else "orig"

    @classmethod
    def epoch_cost(cls, info: DataInfo) -> float:
        return 1.3  # the student's step plus the frozen teacher's forward pass

    def teacher_modalities(self) -> list[str]:
        return [self.info.rich] if self.teacher_kind == "cross-modal" else list(self.info.channels)

    def inputs(self) -> list[str]:
        return list(dict.fromkeys([self.modality, *self.teacher_modalities()]))

    def teacher_input(self, x: dict[str, Tensor]):
        """What the teacher reads: the rich modality's tensor (cross-modal) or every modality's (multi-modal)."""
        return x[self.info.rich] if self.teacher_kind == "cross-modal" else {m: x[m] for m in self.teacher_modalities()}

    def _teacher_input(self, x: dict[str, Tensor]):
        if self.teacher is None:
            raise RuntimeError(f"{self.name} needs a teacher; the engine loads it from the store")
        self.teacher.train(bool(self.options.teacher_train_mode))
        return self.teacher_input(x)

    def teacher_forward(self, x: dict[str, Tensor]) -> Tensor:
        return teacher_logits(self.teacher, self._teacher_input(x))

    def teacher_features(self, x: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The frozen teacher's logits and features of ``feature_stages``, without a graph."""
        with torch.no_grad():
            logits, feats = self.teacher.forward_features(self._teacher_input(x), self.feature_stages)
        return full(logits), {k: full(v) for k, v in feats.items()}

    def loss(self, batch: Batch, epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        if self.feature_stages:
            s, s_feats = self.net.forward_features(batch.x[self.modality], self.feature_stages)
            t, t_feats = self.teacher_features(batch.x)
            return self.distill_features(full(s), t, s_feats, t_feats, batch, epoch)
        s = full(self.net(batch.x[self.modality]))
        t = self.teacher_forward(batch.x)
        return self.distill(s, t, batch, epoch)

    def distill_features(self, student: Tensor, teacher: Tensor, student_features: dict[str, Tensor],
                         teacher_features: dict[str, Tensor], batch: Batch, epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        """A feature-level method's loss: logits and the ``feature_stages`` features of both networks."""
        raise NotImplementedError

    def distill(self, student: Tensor, teacher: Tensor, batch: Batch, epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def predict(self, x: dict[str, Tensor]) -> dict[str, Tensor]:
        return {self.modality: self.net(x[self.modality])}

    def export(self, key: str) -> nn.Module:
        return self.net
