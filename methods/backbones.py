"""Backbones: torchvision's ResNet-18 for C input channels, and the two-branch (M-branch) teacher."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models import resnet18

FEATURE_DIM = 512


def resnet18_encoder(in_channels: int) -> nn.Module:
    """ResNet-18, random init, first conv 7x7/2 (pad 3, no bias) for ``in_channels``; fc removed.

    Outputs the 512-d average-pooled feature vector (the official DisCoM-KD code's encoder). As in
    every script of the authors' code (teacher, students, DisCoM-KD), the first convolution is a fresh
    ``nn.Conv2d`` with PyTorch's default init (uniform, std 1/sqrt(3 fan_in): 0.048 for 3 channels,
    0.082 for 1), not torchvision's ``kaiming_normal_(fan_out)`` (std 0.025) of the other convolutions:
    :func:`kaiming_conv1_` gives the latter (``train.conv1_init = "kaiming"``).
    """
    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
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


class Classifier(nn.Module):
    """A single-modal classifier: encoder + linear head. Also the deployable form of every student."""

    def __init__(self, in_channels: int, n_classes: int):
        super().__init__()
        self.encoder = resnet18_encoder(in_channels)
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


class FusionClassifier(nn.Module):
    """The multi-modal teacher: one ResNet-18 per modality, features summed, one linear head."""

    def __init__(self, channels: dict[str, int], n_classes: int):
        super().__init__()
        self.encoders = nn.ModuleDict({m: resnet18_encoder(c) for m, c in channels.items()})
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        feats = [enc(x[m]) for m, enc in self.encoders.items()]
        return self.head(torch.stack(feats).sum(0))
