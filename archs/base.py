"""What an architecture declares, and the one way every method reads an encoder.

An *encoder* is an ``nn.Module`` whose ``forward(x)`` returns the pooled feature vector (B x D). Beside its
weights it carries three plain attributes that the methods read, never a family's module names:

- ``feature_dim``: D, the pooled width (a classifier head, a projection or an embedding is sized from it);
- ``stage_modules``: the cross-family stage names (``stage1``..``stage4``: the maps of a CNN after its
  stride-4/8/16/32 blocks; ``stage1``..``stage3`` of a CIFAR-style net, strides 1/2/4) -> the submodule
  whose output is that map;
- ``stem_path``: the path of the first convolution (the one adapted to C input channels).

:func:`forward_stages` returns the pooled features and the maps of the named stages in one pass (forward
hooks on the stage modules, removed afterwards: an exported model carries none). Keeping the family's own
module tree, not a wrapper, keeps torchvision's and timm's state-dict keys, so their weight files load as
they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from cmkd.errors import UserError

#: the stage names every family maps onto (``pool``: the pooled vector)
STAGE_NAMES = ("stage1", "stage2", "stage3", "stage4")
POOL = "pool"
#: the names the ResNet-18 stages had before the registry (method options and plugins that still use them)
ALIASES = {f"layer{i}": f"stage{i}" for i in range(1, 5)}


def canonical_stage(name: str) -> str:
    """``layerN`` (the ResNet-18 names) -> ``stageN``; any other name as it is."""
    return ALIASES.get(name, name)


@dataclass(frozen=True)
class Stage:
    """A stage as declared by its family (at the family's default width): output channels and stride."""

    module: str
    channels: int
    stride: int


class Arch:
    """Base of every registered architecture. Subclasses declare and build; they hold no state."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    family: ClassVar[str] = ""
    #: "image" (B x C x H x W) or "vector" (B x D)
    input_kind: ClassVar[str] = "image"
    #: whether ``train.width`` (the base width) scales this network; the others refuse a width other than 64
    takes_width: ClassVar[bool] = False
    #: the smallest image side it takes (a ViT: its patch)
    min_size: ClassVar[int] = 8
    #: image sides must be a multiple of this (a ViT's patch); 1: any
    size_multiple: ClassVar[int] = 1

    @classmethod
    def stages(cls, width: int = 64) -> dict[str, Stage]:
        """The stages this family provides, by cross-family name (``pool`` is always there too)."""
        return {}

    @classmethod
    def check(cls, in_channels: int, image_size: tuple[int, int] | None, width: int = 64) -> None:
        """Refuse, in one line, an input this network cannot take, before anything is built."""
        if cls.input_kind == "image" and image_size is None:
            raise UserError(f"architecture {cls.name!r} is a convolutional network for images; this modality holds "
                            "vectors (N x D): use --arch mlp for it")
        if cls.input_kind == "vector" and image_size is not None:
            raise UserError(f"architecture {cls.name!r} reads vectors (N x D); this modality holds {image_size[0]}x"
                            f"{image_size[1]} images: use an image architecture (cmkd archs lists them)")
        if width != 64 and not cls.takes_width:
            raise UserError(f"train.width = {width} scales resnet18 only; architecture {cls.name!r} has its own widths: "
                            "drop train.width (64) or use resnet18")
        if image_size is not None:
            h, w = image_size
            if min(h, w) < cls.min_size or h % cls.size_multiple or w % cls.size_multiple:
                need = f"sides of at least {cls.min_size} px" + (
                    f" and a multiple of {cls.size_multiple}" if cls.size_multiple > 1 else "")
                raise UserError(f"architecture {cls.name!r} takes images with {need}; these are {h}x{w}: "
                                "use larger images or another architecture")

    @classmethod
    def build(cls, in_channels: int, image_size: tuple[int, int] | None, width: int = 64) -> nn.Module:
        """A randomly initialised encoder for ``in_channels`` (an image's channels, or a vector's D)."""
        raise NotImplementedError


def describe_encoder(encoder: nn.Module, feature_dim: int, stage_modules: dict[str, str], stem: str | None) -> nn.Module:
    """Set the three attributes the methods read (see the module docstring) and return the encoder."""
    encoder.feature_dim = int(feature_dim)
    encoder.stage_modules = dict(stage_modules)
    encoder.stem_path = stem
    return encoder


def forward_stages(encoder: nn.Module, x: Tensor, stages: tuple[str, ...]) -> tuple[Tensor, dict[str, Tensor]]:
    """The pooled features and the maps of ``stages`` (cross-family names, ``pool`` included) in one pass."""
    known = encoder.stage_modules
    bad = [s for s in stages if s != POOL and canonical_stage(s) not in known]
    if bad:
        raise UserError(f"the encoder has no stage {bad[0]!r}; it has {', '.join([*known, POOL])}")
    feats: dict[str, Tensor] = {}
    handles = [encoder.get_submodule(known[canonical_stage(s)]).register_forward_hook(
        lambda _m, _i, out, s=s: feats.__setitem__(s, out)) for s in stages if s != POOL]
    try:
        pooled = encoder(x)
    finally:
        for h in handles:
            h.remove()
    if POOL in stages:
        feats[POOL] = pooled
    return pooled, feats


def on_meta(builder) -> nn.Module:
    """``builder()`` built on the meta device (no weights, no init); a builder that computes with tensors while
    it builds (torchvision's RegNet sizes its blocks with ``tolist()``) is built on the CPU and moved there."""
    try:
        with torch.device("meta"):
            return builder()
    except (NotImplementedError, RuntimeError):
        return builder().to("meta")


def stage_shapes(encoder_or_builder, in_channels: int, image_size: tuple[int, int] | None,
                 stages: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """The per-sample shape of each of ``stages`` (``pool``: ``(D,)``), from a forward pass on the meta
    device: no compute, no memory. Takes an encoder or a zero-argument callable that builds one."""
    enc = encoder_or_builder if isinstance(encoder_or_builder, nn.Module) else on_meta(encoder_or_builder)
    with torch.device("meta"):
        enc = enc.to("meta").eval()
        shape = (1, in_channels, *image_size) if image_size is not None else (1, in_channels)
        _, feats = forward_stages(enc, torch.empty(shape), stages)
    return {s: tuple(f.shape[1:]) for s, f in feats.items()}


def expected_side(size: int, stride: int) -> int:
    """A stride-``stride`` map's side for an input side ``size`` (padded convolutions round up)."""
    return max(1, math.ceil(size / stride))


def replace_stem(model: nn.Module, path: str, in_channels: int) -> None:
    """Swap the convolution at ``path`` for a fresh one with ``in_channels`` inputs and the same shape
    otherwise (PyTorch's default init, as the DisCoM-KD authors' code does for its ResNet-18 stem)."""
    old = model.get_submodule(path)
    assert isinstance(old, nn.Conv2d), f"{path} is not a convolution"
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
                    old.groups if old.groups == 1 else in_channels, old.bias is not None, old.padding_mode)
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def torchvision_init_(model: nn.Module) -> None:
    """torchvision's ResNet init: ``kaiming_normal_`` (fan_out, ReLU) for every convolution, BatchNorm weight 1
    and bias 0 (the CIFAR ResNets of the KD papers use the same)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def last_linear(model: nn.Module) -> str:
    """The path of a classification network's last ``nn.Linear`` (its classifier)."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


def drop_classifier(model: nn.Module) -> int:
    """Replace the last ``nn.Linear`` by ``nn.Identity`` so that ``forward`` returns the pooled features;
    returns their width."""
    path = last_linear(model)
    width = model.get_submodule(path).in_features
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, nn.Identity())
    return width
