"""Any timm model by name (``timm:<name>``): ``in_chans`` for the channels, no classifier
(``num_classes=0``: ``forward`` returns the pooled pre-logits), stages from its ``feature_info`` (the last
block at each of the reductions 4, 8, 16 and 32 becomes ``stage1``..``stage4``)."""

from __future__ import annotations

import functools

from torch import nn

from cmkd.errors import UserError, nearest

from .base import Arch, Stage, describe_encoder, forward_stages

REDUCTIONS = {4: "stage1", 8: "stage2", 16: "stage3", 32: "stage4"}


def _timm():
    try:
        import timm
    except ImportError as e:  # a declared dependency; a broken environment gets one line
        raise UserError(f"timm is not importable ({e}); reinstall cmkd-bench (pip install -e .)") from None
    return timm


@functools.lru_cache(maxsize=None)
def timm_arch(model: str) -> type[Arch]:
    """An :class:`Arch` class for timm model ``model`` (checked against timm's list of models)."""
    timm = _timm()
    names = timm.list_models()
    if model not in names:
        raise UserError(f"timm has no model {model!r}{nearest(model, names)}; `python -c \"import timm; "
                        f"print(timm.list_models('*resnet*'))\"` lists them")
    return type(f"timm_{model}", (TimmArch,), {"name": f"timm:{model}", "model": model,
                                                "description": f"timm {model}", "family": "timm"})


class TimmArch(Arch):
    model = ""

    @classmethod
    def create(cls, in_channels: int, image_size) -> nn.Module:
        timm = _timm()
        try:  # transformers need the image size; convolutional nets take any and refuse the argument
            return timm.create_model(cls.model, pretrained=False, num_classes=0, in_chans=in_channels,
                                     img_size=tuple(image_size))
        except TypeError:
            return timm.create_model(cls.model, pretrained=False, num_classes=0, in_chans=in_channels)

    @classmethod
    def stage_map(cls, net: nn.Module) -> dict[str, tuple[str, int, int]]:
        out: dict[str, tuple[str, int, int]] = {}
        for info in getattr(net, "feature_info", []) or []:
            name = REDUCTIONS.get(int(info["reduction"]))
            if name:
                out[name] = (info["module"], int(info["num_chs"]), int(info["reduction"]))
        return dict(sorted(out.items()))

    @classmethod
    def probe(cls, in_channels: int, image_size) -> tuple[int, dict[str, tuple[str, int, int]]]:
        """The pooled width and the stages whose output is a feature map (a transformer's blocks give
        tokens, not maps, and are left out), from a forward pass on the meta device."""
        import torch

        size = tuple(image_size) if image_size is not None else (224, 224)
        with torch.device("meta"):
            net = cls.create(in_channels, size).eval()
            table = cls.stage_map(net)
            describe_encoder(net, 0, {k: v[0] for k, v in table.items()}, None)
            pooled, feats = forward_stages(net, torch.empty(1, in_channels, *size), tuple(table))
        return int(pooled.shape[1]), {k: v for k, v in table.items() if feats[k].dim() == 4}

    @classmethod
    def check(cls, in_channels: int, image_size, width: int = 64) -> None:
        """timm declares no smallest input: a forward pass on the meta device finds out (free)."""
        super().check(in_channels, image_size, width)
        try:
            cls.probe(in_channels, image_size)
        except (RuntimeError, ValueError, AssertionError) as exc:
            h, w = image_size
            raise UserError(f"architecture {cls.name!r} cannot take {h}x{w} images ({str(exc).splitlines()[0][:120]}); "
                            "use larger images or another architecture") from None

    @classmethod
    def stages(cls, width: int = 64) -> dict[str, Stage]:
        return {k: Stage(*v) for k, v in cls.probe(3, None)[1].items()}

    @classmethod
    def build(cls, in_channels: int, image_size, width: int = 64) -> nn.Module:
        dim, table = cls.probe(in_channels, image_size)
        net = cls.create(in_channels, image_size)
        stem = next((n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)), None)
        return describe_encoder(net, dim, {k: v[0] for k, v in table.items()}, stem)
