"""STUDENT: one encoder (ResNet-18 by default) on one modality, cross-entropy only.

On the rich modality this same trial is the cross-modal TEACHER (the paper's tables show the
same numbers), so it is trained once and referenced twice.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import Classifier, encoder_for
from .base import Batch, DataInfo, Method, MethodOptions
from .registry import register_method


@register_method("student")
class Student(Method):
    description = "single-modal encoder + linear head with cross-entropy (STUDENT; on the rich modality also the cross-modal TEACHER)"
    label = "STUDENT"
    single_modality = True
    teaches = "cross-modal"

    def __init__(self, info: DataInfo, modality: str | None, options: MethodOptions, teacher: nn.Module | None = None,
                 teacher_kind: str | None = None):
        super().__init__(info, modality, options, teacher, teacher_kind)
        assert modality is not None
        self.net = Classifier(encoder_for(info, modality), info.n_classes)

    def loss(self, batch: Batch, epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        m = self.modality
        ce = F.cross_entropy(self.net(batch.x[m]), batch.labels(m))
        return ce, {"ce": ce}

    def predict(self, x: dict[str, Tensor]) -> dict[str, Tensor]:
        return {self.modality: self.net(x[self.modality])}

    def export(self, key: str) -> nn.Module:
        return self.net
