"""LeNet-5 as MST-Distill's ``models/LeNet5.py`` defines it (its AV-MNIST student and teacher): conv5x5(6, pad 2)
-ReLU-avgpool2, conv5x5(16)-ReLU-avgpool2, conv5x5(120)-ReLU, then fc(84)-ReLU; the pooled features are those
84 values and the head is the trial's. One divergence, for other image sizes: the 120 maps are averaged over
space before fc1 (on 28 x 28 images they are 1 x 1, so it is MST-Distill's network exactly)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .base import Arch, Stage, describe_encoder
from .registry import register_arch


class LeNet5(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.conv3 = nn.Conv2d(16, 120, 5)
        self.fc1 = nn.Linear(120, 84)
        # the maps after each pooling, as modules a forward hook can read
        self.block1, self.block2 = nn.Identity(), nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.block1(F.avg_pool2d(F.relu(self.conv1(x)), 2))
        h = self.block2(F.avg_pool2d(F.relu(self.conv2(h)), 2))
        h = F.relu(self.conv3(h)).mean(dim=(2, 3))
        return F.relu(self.fc1(h))


@register_arch("lenet5")
class LeNet5Arch(Arch):
    description = "LeNet-5 (MST-Distill's AV-MNIST network): 3 convolutions, fc 84; 28 x 28 images and larger"
    family = "lenet"
    min_size = 28

    @classmethod
    def stages(cls, width: int = 64) -> dict[str, Stage]:
        # conv2 is unpadded, so its map (block2) is not size / 4: only the padded first stage is declared
        return {"stage1": Stage("block1", 6, 2)}

    @classmethod
    def build(cls, in_channels: int, image_size, width: int = 64) -> nn.Module:
        net = LeNet5(in_channels)
        return describe_encoder(net, 84, {k: s.module for k, s in cls.stages().items()}, "conv1")
