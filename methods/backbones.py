"""Backbones: torchvision's ResNet-18 for C input channels, and the two-branch (M-branch) teacher."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models import resnet18

FEATURE_DIM = 512


def resnet18_encoder(in_channels: int) -> nn.Module:
    """ResNet-18, random init, first conv 7x7/2 (pad 3, no bias) for ``in_channels``; fc removed.

    Outputs the 512-d average-pooled feature vector (the official DisCoM-KD code's encoder).
    """
    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.fc = nn.Identity()
    return net


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
