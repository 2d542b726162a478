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


def stage_shape(in_channels: int, image_size: tuple[int, int], stage: str) -> tuple[int, int, int]:
    """(channels, height, width) of a :func:`resnet18_encoder`'s ``stage`` for one image of ``image_size``,
    from a forward pass on the meta device (no compute, no memory)."""
    with torch.device("meta"):
        encoder = resnet18_encoder(in_channels).eval()
        _, feats = encoder_stages(encoder, torch.empty(1, in_channels, *image_size), (stage,))
    return tuple(feats[stage].shape[1:])  # type: ignore[return-value]


def build_teacher_network(info, kind: str) -> nn.Module:
    """A randomly initialised network of the architecture a ``kind`` teacher has ("cross-modal": a
    :class:`Classifier` on the rich modality; "multi-modal": a :class:`FusionClassifier`)."""
    if kind == "cross-modal":
        return Classifier(info.channels[info.rich], info.n_classes)
    return FusionClassifier(info.channels, info.n_classes)


class Classifier(nn.Module):
    """A single-modal classifier: encoder + linear head. Also the deployable form of every student."""

    def __init__(self, in_channels: int, n_classes: int):
        super().__init__()
        self.encoder = resnet18_encoder(in_channels)
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))

    def forward_features(self, x: Tensor, stages: tuple[str, ...]) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and the features of ``stages`` (see :data:`STAGES`) in one pass."""
        pooled, feats = encoder_stages(self.encoder, x, stages)
        return self.head(pooled), feats


class FusionClassifier(nn.Module):
    """The multi-modal teacher: one ResNet-18 per modality, features summed, one linear head."""

    def __init__(self, channels: dict[str, int], n_classes: int):
        super().__init__()
        self.encoders = nn.ModuleDict({m: resnet18_encoder(c) for m, c in channels.items()})
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        feats = [enc(x[m]) for m, enc in self.encoders.items()]
        return self.head(torch.stack(feats).sum(0))

    def forward_features(self, x: dict[str, Tensor], stages: tuple[str, ...]) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and the *fused* features of ``stages``: each stage summed over the modalities, as the
        pooled features are (equal image sizes make the maps align)."""
        per = [encoder_stages(enc, x[m], stages) for m, enc in self.encoders.items()]
        fused = {s: torch.stack([f[s] for _, f in per]).sum(0) for s in per[0][1]}
        return self.head(torch.stack([p for p, _ in per]).sum(0)), fused
