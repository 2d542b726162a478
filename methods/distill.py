"""What every logit-distillation student shares: one ResNet-18 on its modality, a frozen teacher.

A subclass declares its options and computes ``distill(student_logits, teacher_logits, batch, epoch)``
with the pure functions of :mod:`cmkd.methods.kd_losses`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from cmkd.harness.errors import UserError

from .backbones import Classifier
from .base import Batch, DataInfo, Method, MethodOptions, teacher_logits


@dataclass(frozen=True)
class DistillOptions(MethodOptions):
    lskd: bool = False  # logit standardisation (LSKD) inside the KD loss, same temperatures and weights
    teacher_train_mode: bool = False  # the DisCoM-KD authors' quirk: teacher BatchNorm on batch statistics

    #: numeric options that may be negative (everything else: weights, temperatures, counts, must not)
    signed: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, value in self.__dict__.items():
            if isinstance(value, bool) or value is None or name in self.signed:
                continue
            if not isinstance(value, (int, float)):
                raise UserError(f"option {name} must be a number, got {value!r}")
            if value < 0:
                raise UserError(f"option {name} must be >= 0, got {value}")
        for name in ("temperature", "t0", "t_start", "t_range"):
            if name in self.__dict__ and not 0 < float(self.__dict__[name]) <= 100:
                raise UserError(f"option {name} must lie in (0, 100], got {self.__dict__[name]}")


class DistilledStudent(Method):
    teacher_kinds: ClassVar[tuple[str, ...]] = ("cross-modal", "multi-modal")
    single_modality = True
    joint_augmentation = True  # teacher and student see the same flips/rotation of a sample

    def __init__(self, info: DataInfo, modality: str | None, options: MethodOptions, teacher: nn.Module | None = None,
                 teacher_kind: str | None = None):
        super().__init__(info, modality, options, teacher, teacher_kind)
        assert modality is not None
        self.net = Classifier(info.channels[modality], info.n_classes)

    @classmethod
    def variant(cls, options: MethodOptions) -> str:
        return "lskd" if getattr(options, "lskd", False) else "orig"

    def teacher_modalities(self) -> list[str]:
        return [self.info.rich] if self.teacher_kind == "cross-modal" else list(self.info.channels)

    def inputs(self) -> list[str]:
        return list(dict.fromkeys([self.modality, *self.teacher_modalities()]))

    def teacher_forward(self, x: dict[str, Tensor]) -> Tensor:
        if self.teacher is None:
            raise RuntimeError(f"{self.name} needs a teacher; the engine loads it from the store")
        self.teacher.train(bool(self.options.teacher_train_mode))
        inp = x[self.info.rich] if self.teacher_kind == "cross-modal" else {m: x[m] for m in self.teacher_modalities()}
        return teacher_logits(self.teacher, inp)

    def loss(self, batch: Batch, epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        s = self.net(batch.x[self.modality]).float()
        t = self.teacher_forward(batch.x)
        return self.distill(s, t, batch, epoch)

    def distill(self, student: Tensor, teacher: Tensor, batch: Batch, epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def predict(self, x: dict[str, Tensor]) -> dict[str, Tensor]:
        return {self.modality: self.net(x[self.modality])}

    def export(self, key: str) -> nn.Module:
        return self.net
