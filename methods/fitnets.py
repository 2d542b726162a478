"""FitNets (Romero et al. ICLR 2015): a hint between a stage of the student and the same stage of the
teacher, through a trainable regressor on the student side, plus cross-entropy on labels.

Defaults and their sources:
- one training stage, ``ce_weight`` 1 and ``hint_weight`` 100: mdistiller's ``FITNET.LOSS`` (the paper
  trains the hint first and then the student with KD; mdistiller, whose FitNets numbers the later
  literature quotes, trains both terms together from the start);
- ``stage`` "stage2" (ResNet-18's layer2; any architecture's stride-8 map): mdistiller's ``HINT_LAYER = 2``
  (the paper's "middle layer" of each network); the regressor is sized from the student's and the
  teacher's own maps at that stage, so teacher and student may be other architectures;
- the regressor: mdistiller's ``ConvReg`` (a 1x1 convolution when the two maps have the same size, a
  stride-2 3x3 when the student's is twice the teacher's, a transposed 4x4 when half; then BatchNorm
  and ReLU: torchvision's stage outputs end in a ReLU, so the targets are non-negative);
- MSE averaged over every element (``F.mse_loss``), the teacher's map constant.

The multi-modal teacher's map at a stage is the *sum* of its modality encoders' maps at that stage
(:meth:`FusionClassifier.forward_features`): the spatial form of the fused vector its head reads (the
sum commutes with the average pooling), so the hint asks the single-modal student to reproduce, with
one modality, what the fused encoders compute from all of them.
No logit KD term: there is nothing for LSKD to standardise, so the method has no ``lskd`` option.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cmkd.errors import UserError

from .backbones import STAGE_CHOICES, stage_shape
from .base import DataInfo, MethodOptions
from .distill import WEIGHT, DistilledStudent, FeatureOptions
from .fitnets_losses import fitnets_loss
from .options import option
from .registry import register_method
from .precision import full


@dataclass(frozen=True)
class FitNetsOptions(FeatureOptions):
    stage: str = option("stage2", "the stage of the hint (mdistiller's HINT_LAYER 2: ResNet-18's layer2)",
                        choices=STAGE_CHOICES)
    ce_weight: float = option(1.0, "weight of CE on labels (mdistiller)", **WEIGHT)
    hint_weight: float = option(100.0, "weight of the hint MSE (mdistiller)", **WEIGHT)


def conv_regressor(student: tuple[int, int, int], teacher: tuple[int, int, int]) -> nn.Module:
    """mdistiller's ``ConvReg`` for a student map (C, H, W) onto a teacher map (C', H', W')."""
    (sc, sh, sw), (tc, th, tw) = student, teacher
    if sh == 2 * th:
        conv = nn.Conv2d(sc, tc, kernel_size=3, stride=2, padding=1)
    elif 2 * sh == th:
        conv = nn.ConvTranspose2d(sc, tc, kernel_size=4, stride=2, padding=1)
    elif sh >= th and sw >= tw:
        conv = nn.Conv2d(sc, tc, kernel_size=(1 + sh - th, 1 + sw - tw))
    else:
        raise UserError(f"fitnets: no regressor maps a student map of {sh}x{sw} onto a teacher map of {th}x{tw}; "
                        "use images of equal size for both modalities or another stage")
    return nn.Sequential(conv, nn.BatchNorm2d(tc), nn.ReLU())


def _shapes(info: DataInfo, modality: str, stage: str) -> tuple[tuple, tuple]:
    student = stage_shape(info, modality, stage)
    teacher = stage_shape(info, info.rich, stage, teacher=True)  # every teacher's size (fused maps align)
    return student, teacher


@register_method("fitnets")
class FitNets(DistilledStudent):
    description = "FitNets: MSE hint between one ResNet stage of student (through a regressor) and teacher, + CE"
    label = "FitNets"
    Options = FitNetsOptions

    def __init__(self, info: DataInfo, modality: str | None, options: MethodOptions, teacher: nn.Module | None = None,
                 teacher_kind: str | None = None):
        super().__init__(info, modality, options, teacher, teacher_kind)
        self.feature_stages = (self.options.stage,)
        self.regressor = conv_regressor(*_shapes(info, modality, self.options.stage))

    @classmethod
    def check(cls, info: DataInfo, modality, options) -> None:
        super().check(info, modality, options)
        conv_regressor(*_shapes(info, modality, options.stage))  # refuses maps it cannot align

    @classmethod
    def epoch_cost(cls, info: DataInfo) -> float:
        return 1.35

    def distill_features(self, student, teacher, student_features, teacher_features, batch, epoch):
        stage, o = self.options.stage, self.options
        regressed = full(self.regressor(student_features[stage]))
        return fitnets_loss(student, batch.labels(self.modality), regressed, teacher_features[stage],
                            o.ce_weight, o.hint_weight)
