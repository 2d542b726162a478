"""TEACHER (multi-modal): one encoder per modality (ResNet-18 by default) fused by summing features, one linear head.

Trained on paired batches with joint augmentation (the official ``teacher.py``, fusion SUM).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import FusionClassifier, encoder_for
from .base import FUSED, Batch, DataInfo, Method, MethodOptions
from .registry import register_method


@register_method("teacher-mm")
class MultiModalTeacher(Method):
    description = "multi-modal TEACHER: an encoder per modality, features summed, one linear classifier"
    label = "TEACHER"
    teaches = "multi-modal"

    def __init__(self, info: DataInfo, modality: str | None, options: MethodOptions, teacher: nn.Module | None = None,
                 teacher_kind: str | None = None):
        super().__init__(info, modality, options, teacher, teacher_kind)
        self.net = FusionClassifier({m: encoder_for(info, m) for m in info.channels}, info.n_classes)

    @classmethod
    def check(cls, info: DataInfo, modality, options) -> None:
        super().check(info, modality, options)
        from cmkd.errors import UserError

        if len(info.channels) < 2:
            raise UserError(f"teacher-mm needs at least two modalities; {info.name!r} has {list(info.channels)}")

    def loss(self, batch: Batch, epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        ce = F.cross_entropy(self.net(batch.x), batch.y)
        return ce, {"ce": ce}

    def predict(self, x: dict[str, Tensor]) -> dict[str, Tensor]:
        return {FUSED: self.net(x)}

    def export(self, key: str) -> nn.Module:
        return self.net
