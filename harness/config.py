"""Typed, validated configuration: what one trial is (``TrialSpec``) and how it trains (``TrainConfig``).

A trial's identity is a hash of its spec (and ``SPEC_VERSION``, bumped when a change to the code
changes what a spec means): it names the trial's folder and its results row, so a rerun finds
what is done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import UserError, nearest

#: 2: the official split arithmetic and conv1 initialisation became the defaults (issue 17)
SPEC_VERSION = 2

SCENARIOS = ("cross-modal", "multi-modal", "ablation", "single")
CONV1_INITS = ("official", "kaiming")


def _check_keys(cls, data: dict, what: str) -> None:
    valid = [f.name for f in fields(cls)]
    for key in data:
        if key not in valid:
            raise UserError(f"unknown {what} key {key!r}{nearest(key, valid)}; valid: {', '.join(valid)}")


def check_value(what: str, value: Any, kind: type, optional: bool = False) -> None:
    """Refuse a value of the wrong type with a one-line error: an int field takes an int (not 1.5 or
    true), a float field a finite number, a bool field true/false, a str field text."""
    if value is None and optional:
        return
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        name = {bool: "true or false", int: "an integer", float: "a finite number", str: "text"}.get(kind, kind.__name__)
        raise UserError(f"{what} must be {name}, got {value!r}")


def check_fields(obj: Any, what: str) -> None:
    """Type-check every field of a dataclass instance against its annotation (int, float, bool, str, X | None)."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) == 1 and type(None) in typing.get_args(hint)
        kind = args[0] if optional else hint
        if kind in (int, float, bool, str):
            check_value(f"{what}{f.name}", getattr(obj, f.name), kind, optional)


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

    def __post_init__(self) -> None:
        check_fields(self, "train.")
        from cmkd.datasets.splits import SPLIT_RULES

        if self.split_rule not in SPLIT_RULES:
            raise UserError(f"train.split_rule must be one of {', '.join(SPLIT_RULES)}, got {self.split_rule!r}")
        if self.conv1_init not in CONV1_INITS:
            raise UserError(f"train.conv1_init must be one of {', '.join(CONV1_INITS)}, got {self.conv1_init!r}")
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
        if int(self.threads) < 0:
            raise UserError(f"threads must be >= 0, got {self.threads}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        _check_keys(cls, data, "train")
        return cls(**data)


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

    def __post_init__(self) -> None:
        from cmkd.datasets.splits import MAX_REPETITION

        check_value("seed", self.seed, int)
        if not 0 <= self.seed <= MAX_REPETITION:
            raise UserError(f"seed must lie in 0..{MAX_REPETITION} (the split seed 1000 * seed is a 32-bit integer), "
                            f"got {self.seed}")
        if self.scenario not in SCENARIOS:
            raise UserError(f"unknown scenario {self.scenario!r}{nearest(self.scenario, SCENARIOS)}; valid: {', '.join(SCENARIOS)}")

    def identity(self) -> dict[str, Any]:
        """What the trial id hashes: the spec minus where the data lie (the same data may move)."""
        d = asdict(self)
        d.pop("data_root")
        # device/threads/eval batch do not change what is computed (up to float noise)
        for k in ("device", "threads", "eval_batch_size"):
            d["train"].pop(k)
        d["spec_version"] = SPEC_VERSION
        return d

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
