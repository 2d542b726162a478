"""RKD (Park et al. CVPR 2019): distance-wise and angle-wise relations of the penultimate embeddings
(the pooled encoder features: 512-d for ResNet-18) transferred from teacher to student, plus cross-entropy.

Defaults and their sources: distance weight 25 and angle weight 50 (the paper's lambda_D, lambda_A and
mdistiller's ``RKD.DISTANCE_WEIGHT``/``ANGLE_WEIGHT``); distances normalised by their mean over the
pairs of distinct samples and compared with the Huber loss (smooth L1, beta 1), Euclidean not squared,
eps 1e-12 (the authors' code, mdistiller's ``RKD.PDIST``); CE weight 1 and a weight of 1 on the RKD
sum (mdistiller's ``RKD.LOSS``). No trainable module besides the student: distances and angles are taken within each embedding, so
teacher and student may have pooled features of other widths.
The multi-modal teacher's embedding is its fused (summed) feature vector, the one its head reads.
No logit KD term: there is nothing for LSKD to standardise, so the method has no ``lskd`` option.
"""

from __future__ import annotations

from dataclasses import dataclass

from .distill import WEIGHT, DistilledStudent, FeatureOptions
from .backbones import POOL
from .options import option
from .registry import register_method
from .rkd_losses import rkd_loss
from .precision import full


@dataclass(frozen=True)
class RKDOptions(FeatureOptions):
    ce_weight: float = option(1.0, "weight of CE on labels (mdistiller)", **WEIGHT)
    distance_weight: float = option(25.0, "weight of the distance-wise loss (the paper's lambda_D)", **WEIGHT)
    angle_weight: float = option(50.0, "weight of the angle-wise loss (the paper's lambda_A)", **WEIGHT)
    squared: bool = option(False, "squared Euclidean distances (the authors' default: not squared)")


@register_method("rkd")
class RKD(DistilledStudent):
    description = "Relational KD: distance (25) and angle (50) relations of the penultimate embeddings, + CE"
    label = "RKD"
    Options = RKDOptions
    feature_stages = (POOL,)

    def distill_features(self, student, teacher, student_features, teacher_features, batch, epoch):
        o = self.options
        return rkd_loss(student, batch.labels(self.modality), full(student_features[POOL]), teacher_features[POOL],
                        o.ce_weight, o.distance_weight, o.angle_weight, o.squared)
