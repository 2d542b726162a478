"""An MLP encoder for vector modalities (N x D features): groundwork for non-image data sets."""

from __future__ import annotations

from torch import nn

from .base import Arch, describe_encoder
from .registry import register_arch


@register_arch("mlp")
class MLP(Arch):
    """Two Linear-BatchNorm-ReLU layers of 4 x width units (256 at the default width); pooled = the last."""

    description = "MLP for vector modalities: 2 x (Linear, BatchNorm1d, ReLU), 4 x width units"
    family = "mlp"
    input_kind = "vector"
    takes_width = True

    @classmethod
    def build(cls, in_channels: int, image_size, width: int = 64) -> nn.Module:
        h = 4 * width
        net = nn.Sequential(nn.Linear(in_channels, h), nn.BatchNorm1d(h), nn.ReLU(),
                            nn.Linear(h, h), nn.BatchNorm1d(h), nn.ReLU())
        return describe_encoder(net, h, {}, None)


@register_arch("mst-mlp")
class MSTMLP(Arch):
    """MST-Distill's CrisisMMD branches (``models/MLPs.py``: visualMLP, textualMLP) without their classifier."""

    description = "MST-Distill's CrisisMMD MLP: Linear(D, 1024)-ReLU-Linear(1024, 512)-ReLU"
    family = "mlp"
    input_kind = "vector"

    @classmethod
    def build(cls, in_channels: int, image_size, width: int = 64) -> nn.Module:
        net = nn.Sequential(nn.Linear(in_channels, 1024), nn.ReLU(), nn.Linear(1024, 512), nn.ReLU())
        return describe_encoder(net, 512, {}, None)
