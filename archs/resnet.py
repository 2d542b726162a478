"""The ResNets of torchvision: ``resnet18`` (the paper's network, the default everywhere: today's
network and init bit for bit, and the only entry that ``train.width`` narrows), ``resnet34``, ``resnet50``."""

from __future__ import annotations

from torch import nn
from torchvision.models import ResNet, get_model
from torchvision.models.resnet import BasicBlock

from .base import Arch, Stage, describe_encoder, drop_classifier, replace_stem, torchvision_init_
from .registry import register_arch

#: torchvision's ResNet-18 base width (the paper's network)
PAPER_WIDTH = 64
RESNET_STAGES = {f"stage{i}": f"layer{i}" for i in range(1, 5)}


class NarrowResNet18(ResNet):
    """torchvision's ResNet-18 with base ``width`` instead of 64: the same blocks, strides and init
    (kaiming_normal_ fan_out for convolutions, BatchNorm weight 1 and bias 0), the channels scaled."""

    def __init__(self, width: int) -> None:
        nn.Module.__init__(self)
        self._norm_layer, self.inplanes, self.dilation, self.groups, self.base_width = nn.BatchNorm2d, width, 1, 1, 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(BasicBlock, width, 2)
        self.layer2 = self._make_layer(BasicBlock, 2 * width, 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, 4 * width, 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, 8 * width, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Identity()
        torchvision_init_(self)


class TorchvisionResNet(Arch):
    family = "resnet (torchvision)"
    expansion = 1

    @classmethod
    def stages(cls, width: int = PAPER_WIDTH) -> dict[str, Stage]:
        return {f"stage{i}": Stage(f"layer{i}", width * 2 ** (i - 1) * cls.expansion, 2 ** (i + 1)) for i in range(1, 5)}

    @classmethod
    def build(cls, in_channels: int, image_size, width: int = PAPER_WIDTH) -> nn.Module:
        """torchvision's network with random init; then its first conv, a fresh 7x7/2 (pad 3, no bias)
        ``nn.Conv2d`` for ``in_channels`` with PyTorch's default init (the DisCoM-KD authors' code); fc removed."""
        net = get_model(cls.name, weights=None) if width == PAPER_WIDTH else NarrowResNet18(width)
        replace_stem(net, "conv1", in_channels)
        dim = drop_classifier(net) if isinstance(net.fc, nn.Linear) else 8 * width
        return describe_encoder(net, dim, RESNET_STAGES, "conv1")


@register_arch("resnet18")
class ResNet18(TorchvisionResNet):
    description = "torchvision ResNet-18 (the paper's network; train.width narrows it)"
    takes_width = True


@register_arch("resnet34")
class ResNet34(TorchvisionResNet):
    description = "torchvision ResNet-34"


@register_arch("resnet50")
class ResNet50(TorchvisionResNet):
    description = "torchvision ResNet-50 (bottleneck blocks)"
    expansion = 4
