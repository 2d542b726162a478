"""OFA (Hao et al., NeurIPS 2023, "One-for-all: bridge the gap between heterogeneous architectures in
knowledge distillation"): the student's intermediate maps are made into logits by branch heads, and
every set of student logits matches the teacher's through a target-enhanced cross-entropy.

Read from the authors' ``Hao840/OFAKD`` ``distillers/ofa.py``:
- ``ofa_loss``: ``-sum_c ((p_t + onehot)^eps - onehot) log p_s``, batch mean, softmax at temperature T
  (no T^2). At eps = 1 it is the cross-entropy with the teacher's probabilities; eps > 1 raises the target
  class's weight and lowers the others'. The authors take ``log(softmax)``; ``log_softmax`` here gives the
  same values and stays finite where a probability underflows;
- a CNN student's branch at stage s of n: ``n - s`` depthwise-separable blocks (each halving the side
  and doubling the channels, the last to the wider of the student's and teacher's pooled widths), or a
  1 x 1 convolution at the last stage; then global average pooling and a linear layer to the classes
  (``SepConv`` in ``distillers/utils.py``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def ofa_loss(student: Tensor, teacher: Tensor, target: Tensor, eps: float = 1.0, temperature: float = 1.0) -> Tensor:
    """Batch mean of -sum_c ((p_t + onehot)^eps - onehot) log p_s at temperature T."""
    mask = F.one_hot(target, student.shape[1]).to(student.dtype)
    log_ps = F.log_softmax(student / temperature, dim=1)
    pt = F.softmax(teacher / temperature, dim=1)
    weight = (pt + mask).pow(eps) - mask
    return -(weight * log_ps).sum(dim=1).mean()


def sep_conv(c_in: int, c_out: int) -> nn.Sequential:
    """Depthwise 3 x 3 (stride 2) + pointwise, BN, ReLU, depthwise 3 x 3 + pointwise to ``c_out``, BN, ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, 2, 1, groups=c_in, bias=False), nn.Conv2d(c_in, c_in, 1, bias=False),
        nn.BatchNorm2d(c_in), nn.ReLU(),
        nn.Conv2d(c_in, c_in, 3, 1, 1, groups=c_in, bias=False), nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out), nn.ReLU(),
    )


def branch_head(c_in: int, downsamples: int, width: int, n_classes: int) -> nn.Sequential:
    """The authors' CNN branch: ``downsamples`` SepConv blocks (channels doubling, the last to ``width``)
    or, with none, a 1 x 1 convolution to ``width``; pooled and classified."""
    blocks: list[nn.Module] = []
    if downsamples == 0:
        blocks.append(nn.Conv2d(c_in, width, 1))
    for i in range(downsamples):
        blocks.append(sep_conv(c_in, width if i == downsamples - 1 else 2 * c_in))
        c_in *= 2
    head = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, n_classes))
    for m in head.modules():  # the authors' init_weights
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
    return head
