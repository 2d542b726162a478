"""Typed, validated configuration: what one trial is (``TrialSpec``) and how it trains (``TrainConfig``).

A trial's identity is a hash of its spec (and ``SPEC_VERSION``, bumped when a change to the code
changes what a spec means): it names the trial's folder and its results row, so a rerun finds
what is done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cmkd.archs import DEFAULT_ARCH
from cmkd.errors import UserError, check_fields, check_value, nearest

#: 2: the official split arithmetic and conv1 initialisation became the defaults (issue 17)
#: 3: fused Adam (the same update, other float rounding: a trial's numbers move in the last digits)
#: 4: best weights hold only each output's deployable model, resume checkpoints carry them (other files)
SPEC_VERSION = 4

SCENARIOS = ("cross-modal", "multi-modal", "ablation", "single")
#: train fields outside a trial's (and a benchmark's) identity: where and how fast it runs changes its
#: numbers by float noise at most (device, threads, evaluation batch), when it checkpoints not at all
NOT_IDENTITY = ("device", "threads", "eval_batch_size", "checkpoint_every", "checkpoint_budget")
#: train fields added after trials were recorded, with their defaults: in the identity only where they differ
#: from it, so that no earlier trial id or benchmark config hash moves
ADDED_LATER = {"width": 64, "bn_momentum": 0.0, "precision": "float32"}
#: the same for the spec's own fields: the paper's network for every role, no teacher options
SPEC_ADDED_LATER: dict[str, Any] = {"arch": DEFAULT_ARCH, "teacher_arch": DEFAULT_ARCH, "teacher_options": {},
                                     "pretrained_hash": "", "teacher_pretrained_hash": ""}
#: where a file lies is not what it is: its content hash is in the identity instead
NOT_SPEC_IDENTITY = ("data_root", "pretrained", "teacher_pretrained")
CONV1_INITS = ("official", "kaiming")
SPLIT_PROTOCOLS = ("paper", "published")
#: the float width of a trial's weights, inputs and losses (``train.precision``)
PRECISIONS = ("float32", "float64")


def identity_fields(obj: Any, left_out: tuple[str, ...], added_later: dict[str, Any]) -> dict[str, Any]:
    """A dataclass's fields as an identity: without ``left_out``, and a field of ``added_later`` only where it
    differs from its default (a field added after ids were recorded moves no earlier id)."""
    d = asdict(obj)
    for k in left_out:
        d.pop(k)
    for k, default in added_later.items():
        if d[k] == default:
            d.pop(k)
    return d


def data_key(dataset: str, entry: str | None = "") -> str:
    """A data-set entry's key in plans, results and tables: ``name``, or ``name:label`` for one of several
    entries of that data set (other options, another column)."""
    return f"{dataset}:{entry}" if isinstance(entry, str) and entry else dataset


def _check_keys(cls, data: dict, what: str) -> None:
    valid = [f.name for f in fields(cls)]
    for key in data:
        if key not in valid:
            raise UserError(f"unknown {what} key {key!r}{nearest(key, valid)}; valid: {', '.join(valid)}")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation protocol. Defaults are the paper's (300 epochs, batch 128, Adam 1e-4)."""

    epochs: int = 300
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 0.0
    eval_batch_size: int = 512
    augment: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # bfloat16 autocast, CUDA only
    threads: int = 0  # torch CPU threads; 0 = torch's default
    #: validation cut of the split: official (the released createSplits.py arithmetic) | exact (int(0.8 n))
    split_rule: str = "official"
    #: first convolution's init: official (a fresh nn.Conv2d, PyTorch's default, as the authors' code)
    #: | kaiming (torchvision's kaiming_normal_ fan_out)
    conv1_init: str = "official"
    #: the split protocol: paper (the per-class 70/10/20 rule of split_rule, or the official arrays' own
    #: split) | published (the data set's own train/val/test, where it publishes one)
    split: str = "paper"
    #: resume checkpoints (weights, optimiser moments, state): every N epochs (0: by the budget alone) ...
    checkpoint_every: int = 0
    #: ... and whenever the training time since the last one reaches its write time / budget, so writing costs
    #: at most this share of training time (0: by checkpoint_every alone). A stopped trial always writes one.
    checkpoint_budget: float = 0.05
    #: images and weights in channels_last memory format: the GPU path's tensor-core convolutions, and on a CPU
    #: about 10% faster float64 steps (train.precision) with the same numbers (the default benchmark's)
    channels_last: bool = False
    #: the GPU path: the forward and loss compiled with torch.compile (the first steps pay the compilation)
    compile: bool = False
    #: the ResNet-18 encoders' base width: 64 is torchvision's (the paper's network, 64/128/256/512 channels);
    #: narrower (16: 16/32/64/128, 1/16 of the multiply-adds) is a CPU test bed (the built-in benchmark's)
    width: int = 64
    #: BatchNorm momentum of every network trained (0: each architecture's own: torchvision's MobileNetV3 0.01,
    #: the others 0.1). At 0.01 the running statistics need hundreds of steps to leave their init, so a
    #: CPU-sized benchmark of a few dozen steps evaluates a MobileNetV3 on wrong statistics: set 0.1 there
    bn_momentum: float = 0.0
    #: the float width of weights, inputs and losses: float32 (the paper's) | float64. In float32 the rounding of
    #: another instruction set (AVX2 against AVX-512) or thread count becomes another network by the last epoch
    #: (training amplifies it), so a trial's number is its CPU's; in float64 that rounding stays far below the
    #: digits, so the trial gives the same numbers there, up to a test prediction between logits tied to within
    #: that rounding (tests/test_cross_cpu.py), at about 1.8x the time of a CPU step (docs/benchmark.md).
    #: Deployed models are float32 either way.
    precision: str = "float32"

    def __post_init__(self) -> None:
        check_fields(self, "train.")
        from cmkd.datasets.splits import SPLIT_RULES

        if self.split_rule not in SPLIT_RULES:
            raise UserError(f"train.split_rule must be one of {', '.join(SPLIT_RULES)}, got {self.split_rule!r}")
        if self.split not in SPLIT_PROTOCOLS:
            raise UserError(f"train.split must be one of {', '.join(SPLIT_PROTOCOLS)}, got {self.split!r}")
        if self.conv1_init not in CONV1_INITS:
            raise UserError(f"train.conv1_init must be one of {', '.join(CONV1_INITS)}, got {self.conv1_init!r}")
        if self.precision not in PRECISIONS:
            raise UserError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.amp and self.precision != "float32":
            raise UserError("train.amp (bfloat16 autocast) and train.precision = float64 contradict each other: "
                            "drop one of them")
        if int(self.epochs) <= 0:
            raise UserError(f"epochs must be a positive integer, got {self.epochs}; pass --epochs N with N >= 1")
        if int(self.batch_size) <= 1:
            raise UserError(
                f"batch size must be at least 2 (BatchNorm needs 2 samples), got {self.batch_size}; pass --batch-size N"
            )
        if int(self.eval_batch_size) <= 0:
            raise UserError(f"eval batch size must be positive, got {self.eval_batch_size}")
        if not (0 < float(self.lr) < 1):
            raise UserError(f"learning rate must lie in (0, 1), got {self.lr}; pass --lr 1e-4 for the paper's value")
        if float(self.weight_decay) < 0:
            raise UserError(f"weight decay must be >= 0, got {self.weight_decay}")
        if not (self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:")):
            raise UserError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if not 4 <= int(self.width) <= 256:
            raise UserError(f"train.width (the ResNet-18 base width) must lie in 4..256 (64: the paper's), got {self.width}")
        if not 0 <= float(self.bn_momentum) < 1:
            raise UserError(f"train.bn_momentum must lie in [0, 1) (0: each architecture's own), got {self.bn_momentum}")
        if int(self.threads) < 0:
            raise UserError(f"threads must be >= 0, got {self.threads}")
        cores = os.cpu_count() or 1
        if int(self.threads) > 4 * cores:
            raise UserError(f"threads = {self.threads} is far beyond this machine's {cores} cores; pass at most "
                            f"{4 * cores} (0: torch's default)")
        if int(self.checkpoint_every) < 0:
            raise UserError(f"train.checkpoint_every must be >= 0 epochs (0: by the time budget alone), "
                            f"got {self.checkpoint_every}")
        if not 0 <= float(self.checkpoint_budget) < 1:
            raise UserError(f"train.checkpoint_budget is a share of training time in [0, 1) (0.05: at most 5% spent "
                            f"writing checkpoints), got {self.checkpoint_budget}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        _check_keys(cls, data, "train")
        return cls(**data)

    def identity(self) -> dict[str, Any]:
        """The fields that change a number: all but :data:`NOT_IDENTITY`, and a field of
        :data:`ADDED_LATER` only where it differs from its default."""
        return identity_fields(self, NOT_IDENTITY, ADDED_LATER)

    def cli_flags(self) -> list[str]:
        """The ``cmkd train`` flags that give this config (its non-default fields): the inverse of the CLI's
        flag per field (``--epochs N``; a bool that defaults to false is ``--amp``, one that defaults to true
        ``--no-augment``)."""
        out = []
        for f, kind in train_fields():
            value = getattr(self, f.name)
            if value == f.default:
                continue
            out += [flag_name(f.name, f.default)] if kind is bool else [flag_name(f.name), str(value)]
        return out


def train_fields() -> list[tuple[dataclasses.Field, type]]:
    """``TrainConfig``'s fields with their resolved types: one declaration drives the flags and the config."""
    import typing

    hints = typing.get_type_hints(TrainConfig)
    return [(f, hints[f.name]) for f in fields(TrainConfig)]


def flag_name(name: str, default_true: bool = False) -> str:
    """The command-line flag of train field ``name`` (``--no-<name>`` for a bool that defaults to true)."""
    return ("--no-" if default_true else "--") + name.replace("_", "-")


@dataclass(frozen=True)
class TrialSpec:
    """Everything that determines one trial's numbers."""

    dataset: str
    method: str
    seed: int = 0  # the repetition: selects the split and seeds the initialisation
    modality: str | None = None  # the student's modality (single-modal methods)
    scenario: str = "single"  # cross-modal / multi-modal for KD students; ablation for DisCoM-KD ablations
    method_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    #: the content of the data trained on (``MultiModalData.fingerprint``); "" until the data are loaded,
    #: then part of the identity: the same path with other content is another trial
    data_fingerprint: str = ""
    #: the network trained (``cmkd.archs.choice.ArchChoice`` text: one architecture, or one per modality) ...
    arch: str = DEFAULT_ARCH
    #: ... and, for a distilled method, its teacher's network and its teacher's method options (the teacher
    #: is looked up by its own architecture and options)
    teacher_arch: str = DEFAULT_ARCH
    teacher_options: dict[str, Any] = field(default_factory=dict)
    #: initial weights of the trial's encoders (a state-dict file, or "hub": the torch hub cache; never
    #: downloaded) and their content hash; the teacher's, which its lookup matches
    pretrained: str = ""
    pretrained_hash: str = ""
    teacher_pretrained: str = ""
    teacher_pretrained_hash: str = ""

    def __post_init__(self) -> None:
        from cmkd.datasets.splits import MAX_REPETITION

        check_value("seed", self.seed, int)
        if not 0 <= self.seed <= MAX_REPETITION:
            raise UserError(f"seed must lie in 0..{MAX_REPETITION} (the split seed 1000 * seed is a 32-bit integer), "
                            f"got {self.seed}")
        if self.scenario not in SCENARIOS:
            raise UserError(f"unknown scenario {self.scenario!r}{nearest(self.scenario, SCENARIOS)}; valid: {', '.join(SCENARIOS)}")
        from cmkd.archs.choice import ArchChoice

        object.__setattr__(self, "arch", str(ArchChoice.parse(self.arch, "--arch")))
        object.__setattr__(self, "teacher_arch", str(ArchChoice.parse(self.teacher_arch, "--teacher-arch")))
        check_value("teacher_options", self.teacher_options, dict)
        for role, arch in (("", self.arch), ("teacher_", self.teacher_arch)):
            source = getattr(self, f"{role}pretrained")
            check_value(f"{role}pretrained", source, str)
            if source and not getattr(self, f"{role}pretrained_hash"):  # hashed once, where the spec is made
                from cmkd.archs.weights import content_hash, resolve

                path = resolve(source, ArchChoice.parse(arch).default)
                object.__setattr__(self, f"{role}pretrained", str(path))
                object.__setattr__(self, f"{role}pretrained_hash", content_hash(path))

    def identity(self) -> dict[str, Any]:
        """What the trial id hashes: the spec, with the data's content instead of where they lie (the same
        data may move; other data at the same path are another trial)."""
        d = identity_fields(self, NOT_SPEC_IDENTITY, SPEC_ADDED_LATER)
        d["train"] = self.train.identity()
        d["spec_version"] = SPEC_VERSION
        return d

    def options(self):
        """The method's typed, validated options (defaults filled in): the one place a spec's option dict
        becomes its method's ``Options``."""
        from cmkd.methods import get_method

        return get_method(self.method).Options.from_dict(self.method_options, self.method)

    def resolved_options(self) -> dict[str, Any]:
        """Every option of the method, defaults included (what produced the numbers, not only what was set)."""
        return self.options().to_dict()

    def trial_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialSpec":
        data = dict(data)
        _check_keys(cls, data, "trial")
        train = data.pop("train", {}) or {}
        return cls(train=train if isinstance(train, TrainConfig) else TrainConfig.from_dict(train), **data)

    def replace(self, **changes: Any) -> "TrialSpec":
        return dataclasses.replace(self, **changes)

    def differences(self, other: "TrialSpec") -> list[str]:
        """What differs between two specs' identities, one 'key (this -> other)' per difference."""
        return identity_differences(self.identity(), other.identity())


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def identity_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    fa, fb = _flat(a), _flat(b)
    names = {"data_fingerprint": "data content"}
    return [f"{names.get(k, k)} ({fa.get(k, '-')!r} -> {fb.get(k, '-')!r})"
            for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
