"""SDD (Wei et al., CVPR 2024, "Scale decoupled distillation"): KD on the logits of sub-regions of the
last feature map, each sub-region's pooled feature put through the network's own classifier, with the
regions where the teacher's local and global decisions disagree counted twice.

Read from the authors' ``shicaiwei123/SDD-CVPR2024``:
- ``mdistiller/models/cifar/utils.py`` (``SPP``): adaptive average pooling of the map to 4 x 4, then the
  2 x 2 and 1 x 1 poolings *of that 4 x 4 map*; regions ordered 1 x 1, 2 x 2, 4 x 4 (``M = [1,2,4]``: 21);
- ``mdistiller/models/cifar/resnet.py`` (``ResNet_SDD.forward``): each region's vector through ``fc``;
- ``mdistiller/distillers/KD.py`` (``sdd_kd_loss``): per region and sample, T^2 KL(teacher || student)
  at temperature T summed over classes; weight 1 on the global region, and on a local region 2 where
  the teacher's local prediction is right and its global one wrong or the reverse, else 1; the sum
  divided by regions x samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: the authors' M options, as the scales each selects
SCALES = {"1,2,4": (1, 2, 4), "1,2": (1, 2), "1": (1,)}


def region_features(fmap: Tensor, scales: tuple[int, ...] = (1, 2, 4)) -> Tensor:
    """B x D x R pooled features, regions in the authors' order (1 x 1 first, then 2 x 2, then 4 x 4),
    every scale pooled from the 4 x 4 pooling of ``fmap``."""
    base = F.adaptive_avg_pool2d(fmap, (4, 4))
    pooled = {4: base, 2: F.adaptive_avg_pool2d(base, (2, 2)), 1: F.adaptive_avg_pool2d(base, (1, 1))}
    return torch.cat([pooled[s].flatten(2) for s in scales], dim=2)


def region_logits(head: nn.Module, fmap: Tensor, scales: tuple[int, ...] = (1, 2, 4)) -> Tensor:
    """B x C x R: each region's pooled feature through the classifier ``head``."""
    feats = region_features(fmap, scales)
    return head(feats.transpose(1, 2)).transpose(1, 2)


def region_weights(teacher_regions: Tensor, target: Tensor) -> Tensor:
    """B x R weights: 1 on the global region (index 0); on a local region 2 where the teacher's local and
    global predictions disagree in being right, else 1."""
    right = teacher_regions.argmax(dim=1) == target.unsqueeze(1)
    weights = 1.0 + (right != right[:, :1]).to(teacher_regions.dtype)
    return weights


def sdd_kd_term(student_regions: Tensor, teacher_regions: Tensor, target: Tensor, temperature: float = 4.0) -> Tensor:
    """sum over samples and regions of weight x T^2 KL(teacher || student), over samples x regions."""
    log_ps = F.log_softmax(student_regions / temperature, dim=1)
    pt = F.softmax(teacher_regions / temperature, dim=1)
    kl = (torch.xlogy(pt, pt) - pt * log_ps).sum(dim=1) * temperature ** 2  # B x R
    return (kl * region_weights(teacher_regions, target)).sum() / kl.numel()
