"""Backbones: torchvision's ResNet-18 for C input channels, and the two-branch (M-branch) teacher.

``width`` is the base width: 64 is torchvision's ResNet-18 (the paper's network), whose stages have 64,
128, 256 and 512 channels; a narrower one (``train.width``, e.g. 16: 16/32/64/128 channels, 1/16 of
the multiply-adds) is the CPU test bed of the built-in benchmark. The pooled feature is 8 x width wide.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models import ResNet, resnet18
from torchvision.models.resnet import BasicBlock

#: torchvision's ResNet-18 base width (the paper's network)
PAPER_WIDTH = 64


def feature_dim(width: int = PAPER_WIDTH) -> int:
    """Width of the pooled feature vector of a ResNet-18 of base ``width`` (its last stage's channels)."""
    return 8 * width


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
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def resnet18_encoder(in_channels: int, width: int = PAPER_WIDTH) -> nn.Module:
    """ResNet-18, random init, first conv 7x7/2 (pad 3, no bias) for ``in_channels``; fc removed.

    Outputs the 512-d average-pooled feature vector (the official DisCoM-KD code's encoder). As in
    every script of the authors' code (teacher, students, DisCoM-KD), the first convolution is a fresh
    ``nn.Conv2d`` with PyTorch's default init (uniform, std 1/sqrt(3 fan_in): 0.048 for 3 channels,
    0.082 for 1), not torchvision's ``kaiming_normal_(fan_out)`` (std 0.025) of the other convolutions:
    :func:`kaiming_conv1_` gives the latter (``train.conv1_init = "kaiming"``).
    """
    net = resnet18(weights=None) if width == PAPER_WIDTH else NarrowResNet18(width)
    net.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    return net


def kaiming_conv1_(module: nn.Module) -> int:
    """Re-initialise the first convolution of every ResNet inside ``module`` as torchvision does for
    its other convolutions; returns how many were changed."""
    from torchvision.models import ResNet

    changed = 0
    for sub in module.modules():
        if isinstance(sub, ResNet):
            nn.init.kaiming_normal_(sub.conv1.weight, mode="fan_out", nonlinearity="relu")
            changed += 1
    return changed


#: the ResNet-18 stages a method can ask features of: the four residual stages and the pooled 512-d vector
STAGES = ("layer1", "layer2", "layer3", "layer4", "pool")


def encoder_stages(encoder: nn.Module, x: Tensor, stages: tuple[str, ...]) -> tuple[Tensor, dict[str, Tensor]]:
    """The pooled features of a :func:`resnet18_encoder` and the feature maps of ``stages`` on the way."""
    bad = set(stages) - set(STAGES)
    if bad:
        raise ValueError(f"unknown ResNet-18 stage {sorted(bad)[0]!r}; valid: {', '.join(STAGES)}")
    e = encoder
    h = e.maxpool(e.relu(e.bn1(e.conv1(x))))
    feats: dict[str, Tensor] = {}
    for name in STAGES[:4]:
        h = getattr(e, name)(h)
        if name in stages:
            feats[name] = h
    pooled = torch.flatten(e.avgpool(h), 1)
    if "pool" in stages:
        feats["pool"] = pooled
    return pooled, feats


def stage_shape(in_channels: int, image_size: tuple[int, int], stage: str, width: int = PAPER_WIDTH) -> tuple[int, int, int]:
    """(channels, height, width) of a :func:`resnet18_encoder`'s ``stage`` for one image of ``image_size``,
    from a forward pass on the meta device (no compute, no memory)."""
    with torch.device("meta"):
        encoder = resnet18_encoder(in_channels, width).eval()
        _, feats = encoder_stages(encoder, torch.empty(1, in_channels, *image_size), (stage,))
    return tuple(feats[stage].shape[1:])  # type: ignore[return-value]


def build_teacher_network(info, kind: str) -> nn.Module:
    """A randomly initialised network of the architecture a ``kind`` teacher has ("cross-modal": a
    :class:`Classifier` on the rich modality; "multi-modal": a :class:`FusionClassifier`)."""
    if kind == "cross-modal":
        return Classifier(info.channels[info.rich], info.n_classes, info.width)
    return FusionClassifier(info.channels, info.n_classes, info.width)


class Classifier(nn.Module):
    """A single-modal classifier: encoder + linear head. Also the deployable form of every student."""

    def __init__(self, in_channels: int, n_classes: int, width: int = PAPER_WIDTH):
        super().__init__()
        self.encoder = resnet18_encoder(in_channels, width)
        self.head = nn.Linear(feature_dim(width), n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))

    def forward_features(self, x: Tensor, stages: tuple[str, ...]) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and the features of ``stages`` (see :data:`STAGES`) in one pass."""
        pooled, feats = encoder_stages(self.encoder, x, stages)
        return self.head(pooled), feats


class FusionClassifier(nn.Module):
    """The multi-modal teacher: one ResNet-18 per modality, features summed, one linear head."""

    def __init__(self, channels: dict[str, int], n_classes: int, width: int = PAPER_WIDTH):
        super().__init__()
        self.encoders = nn.ModuleDict({m: resnet18_encoder(c, width) for m, c in channels.items()})
        self.head = nn.Linear(feature_dim(width), n_classes)

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        feats = [enc(x[m]) for m, enc in self.encoders.items()]
        return self.head(torch.stack(feats).sum(0))

    def forward_features(self, x: dict[str, Tensor], stages: tuple[str, ...]) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and the *fused* features of ``stages``: each stage summed over the modalities, as the
        pooled features are (equal image sizes make the maps align)."""
        per = [encoder_stages(enc, x[m], stages) for m, enc in self.encoders.items()]
        fused = {s: torch.stack([f[s] for _, f in per]).sum(0) for s in per[0][1]}
        return self.head(torch.stack([p for p, _ in per]).sum(0)), fused
