"""The other torchvision families through ``torchvision.models.get_model``: the stem (first convolution)
made for C channels, the classifier's last Linear removed, the stages named by cross-family name."""

from __future__ import annotations

from torch import nn
from torchvision.models import get_model

from .base import Arch, Stage, describe_encoder, drop_classifier, replace_stem
from .registry import register_arch


class TorchvisionArch(Arch):
    #: cross-family stage name -> (submodule, channels, stride)
    stage_table: dict[str, tuple[str, int, int]] = {}
    stem = "features.0.0"
    build_kwargs: dict = {}

    @classmethod
    def stages(cls, width: int = 64) -> dict[str, Stage]:
        return {k: Stage(*v) for k, v in cls.stage_table.items()}

    @classmethod
    def build(cls, in_channels: int, image_size, width: int = 64) -> nn.Module:
        net = get_model(cls.name, weights=None, **cls.kwargs(image_size))
        replace_stem(net, cls.stem, in_channels)
        dim = drop_classifier(net)
        return describe_encoder(net, dim, {k: v[0] for k, v in cls.stage_table.items()}, cls.stem)

    @classmethod
    def kwargs(cls, image_size) -> dict:
        return dict(cls.build_kwargs)


def _entry(name: str, description: str, stage_table: dict, stem: str = "features.0.0", min_size: int = 8) -> None:
    cls = type(name, (TorchvisionArch,), {"description": description, "family": "torchvision",
                                          "stage_table": stage_table, "stem": stem, "min_size": min_size})
    register_arch(name)(cls)


def _s(*rows: tuple[str, int, int]) -> dict[str, tuple[str, int, int]]:
    return {f"stage{i}": row for i, row in enumerate(rows, 1)}


_entry("mobilenet_v2", "torchvision MobileNetV2",
       _s(("features.3", 24, 4), ("features.6", 32, 8), ("features.13", 96, 16), ("features.17", 320, 32)))
_entry("mobilenet_v3_small", "torchvision MobileNetV3-Small (pooled: its 1024-d pre-logits)",
       _s(("features.1", 16, 4), ("features.3", 24, 8), ("features.8", 48, 16), ("features.11", 96, 32)))
_entry("mobilenet_v3_large", "torchvision MobileNetV3-Large (pooled: its 1280-d pre-logits)",
       _s(("features.3", 24, 4), ("features.6", 40, 8), ("features.12", 112, 16), ("features.15", 160, 32)))
_entry("shufflenet_v2_x1_0", "torchvision ShuffleNetV2 1.0x",
       _s(("maxpool", 24, 4), ("stage2", 116, 8), ("stage3", 232, 16), ("stage4", 464, 32)), stem="conv1.0")
_entry("efficientnet_b0", "torchvision EfficientNet-B0",
       _s(("features.2", 24, 4), ("features.3", 40, 8), ("features.5", 112, 16), ("features.7", 320, 32)))
_entry("convnext_tiny", "torchvision ConvNeXt-Tiny (sides of at least 32 px: 2x2 downsampling after stride 16)",
       _s(("features.1", 96, 4), ("features.3", 192, 8), ("features.5", 384, 16), ("features.7", 768, 32)), min_size=32)
_entry("regnet_y_400mf", "torchvision RegNetY-400MF",
       _s(("trunk_output.block1", 48, 4), ("trunk_output.block2", 104, 8), ("trunk_output.block3", 208, 16),
          ("trunk_output.block4", 440, 32)), stem="stem.0")


@register_arch("vit_b_16")
class ViTB16(TorchvisionArch):
    """ViT-B/16 whose patch embedding takes C channels; built for the data's image size (square, a multiple
    of the 16-px patch). No CNN stages: only ``pool`` (the class token)."""

    description = "torchvision ViT-B/16 (patch 16; square images, sides a multiple of 16)"
    family = "torchvision"
    stem = "conv_proj"
    min_size = 16
    size_multiple = 16

    @classmethod
    def check(cls, in_channels, image_size, width: int = 64) -> None:
        super().check(in_channels, image_size, width)
        if image_size is not None and image_size[0] != image_size[1]:
            from cmkd.errors import UserError

            raise UserError(f"architecture 'vit_b_16' takes square images; these are {image_size[0]}x{image_size[1]}")

    @classmethod
    def kwargs(cls, image_size) -> dict:
        return {"image_size": int(image_size[0])} if image_size is not None else {}
