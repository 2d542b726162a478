"""The networks a method builds, from the architectures the trial names (``cmkd.archs``).

``DataInfo.arch`` is the trial's own network (the student's, or every modality's of a joint method) and
``DataInfo.teacher_arch`` its teacher's, each an :class:`~cmkd.archs.choice.ArchChoice` text (one name, or
one per modality). The default, ``resnet18`` at ``width`` 64, is the paper's network, bit for bit.
Methods read an encoder's ``feature_dim`` and its cross-family stage names (``stage1``..``stage4``,
``pool``), never a family's module names.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from cmkd.archs import POOL, STAGE_NAMES, forward_stages, get_arch, stage_shapes
from cmkd.archs.base import ALIASES, canonical_stage
from cmkd.archs.choice import ArchChoice
from cmkd.archs.sequence import TemporalMean
from cmkd.errors import UserError

#: torchvision's ResNet-18 base width (the paper's network)
PAPER_WIDTH = 64
#: the stages a method can ask features of: the cross-family maps and the pooled vector
STAGES = (*STAGE_NAMES, POOL)
#: what a method option naming a map accepts: the cross-family names, and ResNet-18's own (layer1..layer4)
STAGE_CHOICES = (*STAGE_NAMES, *ALIASES)


#: the default network per input kind: resnet18 (the paper's) for images, mlp for vectors
KIND_DEFAULT = {"image": "resnet18", "vector": "mlp"}


def arch_name(info, modality: str, teacher: bool = False) -> str:
    """The architecture of ``modality``'s encoder (of one frame, for a sequence) in this trial's network (or its
    teacher's): its ``MODALITY=NAME``, else the bare name. Where that bare name is the default (resnet18), a
    vector modality gets ``mlp`` instead; any other name is taken as given, and one that cannot read the
    modality is refused in one line by :func:`check_encoders` (``--arch mlp`` on images, say)."""
    choice = ArchChoice.parse(info.teacher_arch if teacher else info.arch)
    name = choice.for_modality(modality)
    if modality in dict(choice.per_modality) or name != KIND_DEFAULT["image"]:
        return name
    return KIND_DEFAULT["image" if info.sample(modality).image_size is not None else "vector"]


def encoder_for(info, modality: str, teacher: bool = False) -> nn.Module:
    """A randomly initialised encoder for ``modality`` of the architecture the trial (or its teacher) names;
    for a sequence, that architecture on every frame, averaged over time (:class:`TemporalMean`)."""
    sample = info.sample(modality)
    frame = get_arch(arch_name(info, modality, teacher)).build(sample.channels, sample.image_size, info.width)
    return TemporalMean(frame) if sample.kind == "sequence" else frame


def check_encoders(info, modalities, teacher: bool = False) -> None:
    """Refuse, before anything is built, an architecture that cannot take a modality's input."""
    for m in modalities:
        sample = info.sample(m)
        get_arch(arch_name(info, m, teacher)).check(sample.channels, sample.image_size, info.width)


def stage_names(info, modality: str, teacher: bool = False) -> list[str]:
    """The cross-family names of the maps ``modality``'s encoder provides, in depth order (``pool`` not
    included; empty for a vector encoder and for a sequence, whose maps are per frame)."""
    if info.sample(modality).kind == "sequence":
        return []
    return list(get_arch(arch_name(info, modality, teacher)).stages(info.width))


def stage_shape(info, modality: str, stage: str, teacher: bool = False) -> tuple[int, ...]:
    """(channels, height, width) of ``stage`` of ``modality``'s encoder for one input (meta device: free);
    ``(D,)`` for ``pool``. A sequence's pooled width is its frame encoder's."""
    sample = info.sample(modality)
    build = lambda: get_arch(arch_name(info, modality, teacher)).build(sample.channels, sample.image_size,  # noqa: E731
                                                                        info.width)
    if sample.kind == "sequence" and stage != POOL:
        raise UserError(f"modality {modality!r} is a sequence: its encoder has no stage {stage!r} (only {POOL}); "
                        "use a method that distils logits or pooled features")
    known = stage_names(info, modality, teacher)
    if stage != POOL and canonical_stage(stage) not in known:
        raise UserError(f"the {arch_name(info, modality, teacher)} encoder of {modality!r} ({sample.kind}) has no "
                        f"stage {stage!r} (it has {', '.join([*known, POOL])}); use a method that distils logits or pooled "
                        "features, or a network with that stage")
    return stage_shapes(build, sample.channels, sample.image_size, (stage,))[stage]


def feature_dim_of(info, modality: str, teacher: bool = False) -> int:
    """The pooled width of ``modality``'s encoder."""
    return stage_shape(info, modality, POOL, teacher)[0]


def teacher_feature_dim(info, kind: str) -> int:
    """The width of a ``kind`` teacher's pooled (for a multi-modal one: fused) features."""
    if kind == "cross-modal":
        return feature_dim_of(info, info.rich, teacher=True)
    return max(feature_dim_of(info, m, teacher=True) for m in info.channels)


def kaiming_conv1_(module: nn.Module) -> int:
    """Re-initialise the stem (first convolution) of every encoder inside ``module`` with torchvision's
    ``kaiming_normal_`` (fan_out) of its other convolutions; returns how many were changed."""
    changed = 0
    for sub in module.modules():
        path = getattr(sub, "stem_path", None)
        if path:
            nn.init.kaiming_normal_(sub.get_submodule(path).weight, mode="fan_out", nonlinearity="relu")
            changed += 1
    return changed


def _resnet18(in_channels: int, width: int) -> nn.Module:
    return get_arch("resnet18").build(in_channels, None, width)


def build_teacher_network(info, kind: str) -> nn.Module:
    """A randomly initialised network of the architecture a ``kind`` teacher has ("cross-modal": a
    :class:`Classifier` on the rich modality; "multi-modal": a :class:`FusionClassifier`)."""
    if kind == "cross-modal":
        return Classifier(encoder_for(info, info.rich, teacher=True), info.n_classes)
    return FusionClassifier({m: encoder_for(info, m, teacher=True) for m in info.channels}, info.n_classes)


class Classifier(nn.Module):
    """A single-modal classifier: encoder + linear head. Also the deployable form of every student.

    ``encoder`` is an encoder (:func:`encoder_for`), or a channel count for the paper's ResNet-18."""

    def __init__(self, encoder: nn.Module | int, n_classes: int, width: int = PAPER_WIDTH):
        super().__init__()
        self.encoder = encoder if isinstance(encoder, nn.Module) else _resnet18(encoder, width)
        self.head = nn.Linear(self.encoder.feature_dim, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))

    def forward_features(self, x: Tensor, stages: tuple[str, ...]) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and the features of ``stages`` (see :data:`STAGES`) in one pass."""
        pooled, feats = forward_stages(self.encoder, x, stages)
        return self.head(pooled), feats


class FusionClassifier(nn.Module):
    """The multi-modal teacher: one encoder per modality, pooled features summed, one linear head.

    Encoders of unequal pooled width (other architectures per modality) are first projected to the widest
    by a Linear layer each (``project``); at equal widths there is none and the sum is the paper's."""

    def __init__(self, encoders: dict[str, nn.Module] | dict[str, int], n_classes: int, width: int = PAPER_WIDTH):
        super().__init__()
        self.encoders = nn.ModuleDict({m: e if isinstance(e, nn.Module) else _resnet18(e, width)
                                       for m, e in encoders.items()})
        dims = {m: e.feature_dim for m, e in self.encoders.items()}
        self.feature_dim = max(dims.values())
        if len(set(dims.values())) > 1:
            self.project = nn.ModuleDict({m: nn.Linear(d, self.feature_dim) for m, d in dims.items()
                                          if d != self.feature_dim})
        self.head = nn.Linear(self.feature_dim, n_classes)

    def _pooled(self, m: str, z: Tensor) -> Tensor:
        project = getattr(self, "project", None)
        return project[m](z) if project is not None and m in project else z

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        feats = [self._pooled(m, enc(x[m])) for m, enc in self.encoders.items()]
        return self.head(torch.stack(feats).sum(0))

    def forward_features(self, x: dict[str, Tensor], stages: tuple[str, ...]) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and the *fused* features of ``stages``: each stage summed over the modalities, as the
        pooled features are (the maps must align: equal image sizes and architectures)."""
        per = {m: forward_stages(enc, x[m], stages) for m, enc in self.encoders.items()}
        fused = {}
        for s in stages:
            maps = [self._pooled(m, f[s]) if s == POOL else f[s] for m, (_, f) in per.items()]
            if len({tuple(t.shape) for t in maps}) > 1:
                raise UserError(f"the multi-modal teacher's encoders give {s} maps of other shapes "
                                f"({', '.join(str(tuple(t.shape[1:])) for t in maps)}); a feature method needs them "
                                "equal: give the teacher one architecture for every modality")
            fused[s] = torch.stack(maps).sum(0)
        pooled = torch.stack([self._pooled(m, p) for m, (p, _) in per.items()]).sum(0)
        return self.head(pooled), fused


#: ``gate(stage, modality, feature) -> feature``: what :func:`pooled_gated` applies to a map
Gate = Callable[[str, "str | None", Tensor], Tensor]


def _gated_pooled(encoder: nn.Module, x: Tensor, stages: tuple[str, ...], modality: str | None,
                  gate: Gate | None) -> Tensor:
    known = encoder.stage_modules
    handles = [encoder.get_submodule(known[canonical_stage(s)]).register_forward_hook(
        lambda _m, _i, out, s=s: gate(s, modality, out)) for s in stages]
    try:
        return encoder(x)
    finally:
        for h in handles:
            h.remove()


def pooled_gated(net: nn.Module, x: Tensor | dict[str, Tensor], map_stages: dict[str, str],
                 gate: Gate | None) -> Tensor:
    """The vector the head of a :class:`Classifier` or :class:`FusionClassifier` reads (for a multi-modal
    network: the fused sum), with each encoder's map ``map_stages[modality]`` passed through ``gate`` on its
    way (every modality's encoder of a multi-modal network; ``{}``: none). A gate may return more samples
    than it receives (a batch and its gated copy, stacked): the rest of the network carries them through,
    which is exact in eval mode. What a method that masks a teacher's features (MST-Distill) needs, without
    naming a family's modules."""
    def one(m: str | None) -> tuple[str, ...]:
        return (map_stages[m],) if m in map_stages else ()

    if isinstance(net, FusionClassifier):
        return torch.stack([net._pooled(m, _gated_pooled(enc, x[m], one(m), m, gate))
                            for m, enc in net.encoders.items()]).sum(0)
    m = next(iter(map_stages), None)
    return _gated_pooled(net.encoder, x, one(m), m, gate)
