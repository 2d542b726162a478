"""What every method declares, and what the engine hands it.

A method is an ``nn.Module`` holding what it trains. It declares which modalities it reads,
which outputs (prediction keys) are evaluated, whether it needs a teacher, how its batches are
built, and ``loss(batch, epoch) -> (total, parts)``. The engine owns everything else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from cmkd.archs import DEFAULT_ARCH
from cmkd.datasets.kinds import SampleShape
from cmkd.errors import UserError, nearest

from .options import validate
from .precision import full

#: the prediction key of a model that reads every modality (the multi-modal teacher)
FUSED = "all"


@dataclass(frozen=True)
class DataInfo:
    """What a method may know of the data before training: no arrays."""

    name: str
    channels: dict[str, int]
    image_sizes: dict[str, tuple[int, int]]
    n_classes: int
    rich: str
    #: the encoders' base width every network of the trial is built with (``train.width``; 64: the paper's
    #: ResNet-18). Not a property of the data, but what a method needs beside it to build its networks.
    width: int = 64
    #: the trial's own network and its teacher's (``cmkd.archs.choice.ArchChoice`` texts: one architecture, or
    #: one per modality); resnet18 is the paper's
    arch: str = DEFAULT_ARCH
    teacher_arch: str = DEFAULT_ARCH
    #: per modality, its kind and one sample's shape (:mod:`cmkd.datasets.kinds`); empty in records from
    #: before kinds, whose modalities are all images (``channels`` x ``image_sizes``)
    kinds: dict[str, str] = dataclasses.field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)

    def sample(self, modality: str) -> SampleShape:
        """One sample of ``modality``: its kind and shape (what an encoder is built for)."""
        if modality in self.shapes:
            return SampleShape(self.kinds.get(modality, "image"), tuple(self.shapes[modality]))
        if modality not in self.image_sizes:  # described before kinds: a modality without an image size is a vector
            return SampleShape("vector", (self.channels[modality],))
        return SampleShape("image", (self.channels[modality], *self.image_sizes[modality]))


@dataclass
class Batch:
    """One training step's input. ``x`` holds the (weak) view per modality, already augmented.

    ``y`` are the labels of a paired batch. For unpaired batches (each modality shuffled on its
    own) ``y_by_modality`` holds each modality's labels. ``strong`` is a second, strongly
    augmented view for methods that ask for one.
    """

    x: dict[str, Tensor]
    y: Tensor | None
    y_by_modality: dict[str, Tensor] | None = None
    strong: dict[str, Tensor] | None = None
    #: positions of a paired batch's samples in the training split (0 .. n_train - 1, the same sample
    #: keeps its position in every epoch); None for unpaired batches. Per-sample state (CRD's memory
    #: bank) is indexed by it.
    index: Tensor | None = None

    def labels(self, modality: str) -> Tensor:
        if self.y_by_modality is not None:
            return self.y_by_modality[modality]
        assert self.y is not None
        return self.y


@dataclass(frozen=True)
class MethodOptions:
    """Base for a method's options: unknown keys and bad values fail before any compute."""

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, method: str) -> "MethodOptions":
        data = dict(data or {})
        valid = [f.name for f in fields(cls)]
        for key in data:
            if key not in valid:
                raise UserError(
                    f"method {method!r} has no option {key!r}{nearest(key, valid)}; "
                    f"valid: {', '.join(valid) or '(none)'}"
                )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class NoOptions(MethodOptions):
    pass


class Method(nn.Module):
    """Base class of every registered method."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type[MethodOptions]] = NoOptions
    #: the teachers a method can learn from: "cross-modal" (the single-modal trial on the rich
    #: modality) and/or "multi-modal" (the teacher-mm trial); empty for methods without a teacher
    teacher_kinds: ClassVar[tuple[str, ...]] = ()
    #: True when the method trains on one modality given by the trial's ``modality``
    single_modality: ClassVar[bool] = False
    #: same flips/rotation for every modality of a sample (needs equal image sizes)
    joint_augmentation: ClassVar[bool] = True
    #: after training, save each output's best model as a standalone ``torch.export`` program
    export_models: ClassVar[bool] = False

    # ---- what the plan, the teacher store, the sweep and the tables read (no method name in the harness) ----
    #: the row label in the tables ("" = the registered name)
    label: ClassVar[str] = ""
    #: the teacher kind this method's trials provide, or None. "cross-modal": its trial on the rich modality
    #: teaches that scenario and its trials on every modality are the STUDENT baseline rows; "multi-modal":
    #: its trial is the multi-modal TEACHER. Such trials keep their weights (students load them).
    teaches: ClassVar[str | None] = None
    #: ablations this method runs through its ``ablation`` option: name -> (table number, row label)
    ablations: ClassVar[dict[str, tuple[int, str]]] = {}
    #: the method's row position in the paper's Tables 1-2 (None: not in the paper; its rows follow the
    #: paper's under "other methods")
    paper_row: ClassVar[int | None] = None
    #: the fewest training epochs the method can run (MGDFR: a co-training stage, then a distillation one)
    min_epochs: ClassVar[int] = 1

    @classmethod
    def role(cls) -> str:
        """``reference`` (trained on labels alone; teaches), ``distilled`` (learns from a teacher), or
        ``standalone`` (no teacher, e.g. a joint method with one deployable model per modality)."""
        if cls.teaches:
            return "reference"
        return "distilled" if cls.teacher_kinds else "standalone"

    @classmethod
    def table_label(cls) -> str:
        return cls.label or cls.name

    @classmethod
    def epoch_cost(cls, info: "DataInfo") -> float:
        """Cost of one epoch relative to a single-modal student epoch (forward/backward passes), for planning."""
        return 1.0 if cls.single_modality else float(len(info.channels))

    def __init__(self, info: DataInfo, modality: str | None, options: MethodOptions, teacher: nn.Module | None = None,
                 teacher_kind: str | None = None):
        super().__init__()
        self.info = info
        self.modality = modality
        self.options = options
        self.teacher_kind = teacher_kind
        # the teacher is frozen and not ours: keep it out of parameters() and state_dict()
        object.__setattr__(self, "teacher", teacher)

    # ---- declarations -------------------------------------------------------------------
    @classmethod
    def variant(cls, options: MethodOptions) -> str:
        """A short name of the options that tables distinguish ("" when none)."""
        return ""

    @classmethod
    def check(cls, info: DataInfo, modality: str | None, options: MethodOptions) -> None:
        """Raise :class:`UserError` for a spec this method cannot run, before any compute."""
        if cls.single_modality:
            if modality is None:
                raise UserError(f"method {cls.name!r} trains on one modality: pass --modality ({', '.join(info.channels)})")
            if modality not in info.channels:
                raise UserError(
                    f"data set {info.name!r} has no modality {modality!r}{nearest(modality, list(info.channels))}; "
                    f"valid: {', '.join(info.channels)}"
                )
        elif modality is not None:
            raise UserError(f"method {cls.name!r} reads every modality: drop --modality")

    @classmethod
    def check_epochs(cls, epochs: int) -> None:
        """Refuse, before any compute, fewer epochs than the method's stages need."""
        if epochs < cls.min_epochs:
            raise UserError(f"method {cls.name!r} needs {cls.min_epochs} epochs or more, got {epochs}: pass "
                            f"--epochs {cls.min_epochs} (or --set train.epochs={cls.min_epochs})")

    def inputs(self) -> list[str]:
        """Modalities this method reads in training."""
        return [self.modality] if self.single_modality else list(self.info.channels)

    def outputs(self) -> list[str]:
        """Prediction keys the engine evaluates (and selects a best epoch for) separately."""
        return [self.modality] if self.single_modality else [FUSED]

    def loss_ramps_up(self) -> bool:
        """True when the loss weights grow over the first epochs (a warm-up): a total training loss that
        ends above its first epoch's is then the schedule, and the engine does not flag it (``loss_rose``)."""
        return False

    def paired_batches(self) -> bool:
        return True

    def wants_strong_view(self) -> bool:
        return False

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    # ---- training and prediction -------------------------------------------------------
    def on_train_split(self, labels: Tensor) -> None:
        """Called once before training, and before a checkpoint is loaded, with the training split's
        labels: ``labels[i]`` is the class of the sample that ``Batch.index`` calls ``i``. A method that
        keeps state per training sample (a memory bank) registers it here, so that checkpoints hold it."""

    def on_epoch_start(self, epoch: int, n_epochs: int) -> None:
        """Hook for schedules (DKD warm-up, CTKD curriculum); ``epoch`` counts from 0."""

    def wants_data_pass(self, epoch: int, n_epochs: int) -> bool:
        """Whether :meth:`data_pass` runs before epoch ``epoch`` (after :meth:`on_epoch_start`)."""
        return False

    def data_pass(self, batches: Iterable[Batch]) -> None:
        """A pass over the whole training split before an epoch, for a method whose next stage needs a
        statistic of the data (MGDFR's channel salience): the training samples in order, paired, not
        augmented, in eval mode and without gradients. Whatever it computes must live in buffers, so that
        checkpoints hold it."""

    def wants_validation_pass(self, epoch: int, n_epochs: int) -> bool:
        """Whether :meth:`validation_pass` runs after epoch ``epoch``'s training steps."""
        return False

    def validation_pass(self, batches: Iterable[Batch]) -> None:
        """A pass over the validation split after an epoch's steps, for a method that selects a part of
        itself on validation data as its authors do (MST-Distill's masking modules): paired, not augmented,
        in eval mode and without gradients. What it keeps must live in buffers or modules (checkpoints)."""

    def selectable(self, epoch: int, n_epochs: int) -> bool:
        """Whether epoch ``epoch``'s model may be the output's best epoch: False in the stages before the
        one whose model the authors select from (MST-Distill: the distillation stage). The last epoch must
        be selectable."""
        return True

    def loss(self, batch: Batch, epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def predict(self, x: dict[str, Tensor]) -> dict[str, Tensor]:
        """Logits per output key."""
        raise NotImplementedError

    def export(self, key: str) -> nn.Module:
        """A standalone model for one output key: ``module(x) -> logits`` on that modality's input."""
        raise NotImplementedError(f"{self.name} has no export for {key!r}")

    def epoch_metrics(self) -> dict[str, float]:
        """Extra numbers to log once per epoch (e.g. CTKD's temperature)."""
        return {}


def teacher_logits(teacher: nn.Module, x: Tensor | dict[str, Tensor]) -> Tensor:
    """The frozen teacher's logits, without a graph."""
    with torch.no_grad():
        return full(teacher(x))
