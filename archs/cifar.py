"""The small CIFAR-style networks that KD papers pair (CRD, DKD, MLKD, LSKD: ResNet-32x4 -> ResNet-8x4,
WRN-40-2 -> WRN-16-2, ResNet-20), written here from their published definitions (He et al. 2016, Sec. 4.2;
Zagoruyko & Komodakis 2016): a 3x3 stem at stride 1 and three stages at strides 1, 2, 4, named
``stage1``..``stage3``. One divergence, for other image sizes: the final pooling is adaptive (the papers'
``AvgPool2d(8)`` is the same on 32-px images)."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from .base import Arch, Stage, describe_encoder, torchvision_init_
from .registry import register_arch


class CifarBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the (1x1 conv + BN when the shape changes) shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """depth = 6n + 2; filters = (stem, stage1, stage2, stage3)."""

    def __init__(self, in_channels: int, depth: int, filters: tuple[int, int, int, int]) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, filters[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters[0])
        layers, cin = [], filters[0]
        for i, (cout, stride) in enumerate(zip(filters[1:], (1, 2, 2))):
            blocks = [CifarBasicBlock(cin if j == 0 else cout, cout, stride if j == 0 else 1) for j in range(n)]
            layers.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        torchvision_init_(self)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer3(self.layer2(self.layer1(h)))
        return self.pool(h).flatten(1)


class WideBlock(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv3x3-BN-ReLU-conv3x3, identity or 1x1-conv shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout and stride == 1
        self.shortcut = nn.Identity() if self.equal else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.equal else self.shortcut(pre))


class WideResNet(nn.Module):
    """WRN-depth-k: depth = 6n + 4, stages of 16k, 32k, 64k channels; final BN-ReLU before pooling."""

    def __init__(self, in_channels: int, depth: int, k: int) -> None:
        super().__init__()
        n = (depth - 4) // 6
        widths = (16, 16 * k, 32 * k, 64 * k)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages = []
        for i, stride in enumerate((1, 2, 2)):
            stages.append(nn.Sequential(*[WideBlock(widths[i] if j == 0 else widths[i + 1], widths[i + 1],
                                                    stride if j == 0 else 1) for j in range(n)]))
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(widths[3])
        self.pool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.data.normal_(0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def forward(self, x: Tensor) -> Tensor:
        h = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.pool(F.relu(self.bn(h))).flatten(1)


class CifarArch(Arch):
    family = "cifar"
    min_size = 4
    depth = 0
    filters: tuple[int, ...] = ()

    @classmethod
    def stages(cls, width: int = 64) -> dict[str, Stage]:
        mods = ("layer1", "layer2", "layer3") if cls.filters else ("block1", "block2", "block3")
        chans = cls.filters[1:] if cls.filters else (16 * cls.k, 32 * cls.k, 64 * cls.k)
        return {f"stage{i}": Stage(m, c, s) for i, (m, c, s) in enumerate(zip(mods, chans, (1, 2, 4)), 1)}

    @classmethod
    def build(cls, in_channels: int, image_size, width: int = 64) -> nn.Module:
        net = CifarResNet(in_channels, cls.depth, cls.filters) if cls.filters else WideResNet(in_channels, cls.depth, cls.k)
        stages = cls.stages()
        return describe_encoder(net, stages["stage3"].channels, {k: s.module for k, s in stages.items()}, "conv1")


def _cifar(name: str, description: str, depth: int, filters: tuple[int, ...] = (), k: int = 0) -> None:
    register_arch(name)(type(name, (CifarArch,), {"description": description, "depth": depth, "filters": filters, "k": k}))


_cifar("resnet8x4", "CIFAR ResNet-8x4 (CRD/DKD student: 1 block per stage, 64/128/256 channels)", 8, (32, 64, 128, 256))
_cifar("resnet20", "CIFAR ResNet-20 (3 blocks per stage, 16/32/64 channels)", 20, (16, 16, 32, 64))
_cifar("resnet32x4", "CIFAR ResNet-32x4 (CRD/DKD teacher: 5 blocks per stage, 64/128/256 channels)", 32, (32, 64, 128, 256))
_cifar("wrn_16_2", "Wide ResNet-16-2 (CRD/DKD student)", 16, k=2)
_cifar("wrn_40_2", "Wide ResNet-40-2 (CRD/DKD teacher)", 40, k=2)
