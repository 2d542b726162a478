"""Methods registered outside the package (loaded as a plugin by tests, in the driver and every Ray
worker): what a user writes to add (a) a joint method, (b) a KD student with a text option, (c) a
feature-level student with its own trainable regressor."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from cmkd.methods.base import Method, MethodOptions
from cmkd.methods.distill import DistilledStudent, DistillOptions
from cmkd.methods.kd_losses import kd_loss
from cmkd.methods.options import option
from cmkd.methods.registry import register_method


class TinyNet(nn.Module):
    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.conv, self.head = nn.Conv2d(channels, 8, 3, padding=1), nn.Linear(8, n_classes)

    def forward(self, x):
        return self.head(F.relu(self.conv(x)).mean((2, 3)))


@dataclass(frozen=True)
class JointOptions(MethodOptions):
    ablation: str = option("", "the full method or no-agree", choices=("", "no-agree"))
    agree: float = option(0.5, "weight of the agreement between the modalities' predictions", low=0)


@register_method("test-joint")
class TestJoint(Method):
    """(a) joint: one small network per modality, trained together, one deployable model per modality."""

    description = "test joint method"
    label = "Test joint"
    Options = JointOptions
    export_models = True
    ablations = {"no-agree": (3, "w/o agreement")}

    def __init__(self, info, modality, options, teacher=None, teacher_kind=None):
        super().__init__(info, modality, options, teacher, teacher_kind)
        self.nets = nn.ModuleDict({m: TinyNet(c, info.n_classes) for m, c in info.channels.items()})

    @classmethod
    def variant(cls, options):
        return options.ablation

    def outputs(self):
        return list(self.info.channels)

    def loss(self, batch, epoch):
        logits = {m: net(batch.x[m]) for m, net in self.nets.items()}
        ce = sum(F.cross_entropy(v, batch.labels(m)) for m, v in logits.items())
        parts = {"ce": ce}
        if self.options.ablation != "no-agree":
            a, b = list(logits.values())[:2]
            parts["agree"] = self.options.agree * kd_loss(a, b.detach(), 2.0)
        return sum(parts.values()), parts

    def predict(self, x):
        return {m: net(x[m]) for m, net in self.nets.items()}

    def export(self, key):
        return self.nets[key]


@dataclass(frozen=True)
class TextKDOptions(DistillOptions):
    reduction: str = option("batchmean", "KL reduction", choices=("batchmean", "sum"))
    tau: float = option(2.0, "temperature", low=0, low_open=True)


@register_method("test-kd")
class TestKD(DistilledStudent):
    """(b) a KD student with a text option."""

    description = "test KD student"
    label = "Test KD"
    Options = TextKDOptions

    def distill(self, student, teacher, batch, epoch):
        o = self.options
        ce = F.cross_entropy(student, batch.labels(self.modality))
        kl = F.kl_div(F.log_softmax(student / o.tau, 1), F.softmax(teacher / o.tau, 1), reduction=o.reduction)
        return ce + kl, {"ce": ce, "kl": kl}


@register_method("test-hint")
class TestHint(DistilledStudent):
    """(c) feature level: a hint between layer3 maps through a trainable 1x1 regressor on the student side."""

    description = "test hint student"
    Options = DistillOptions
    feature_stages = ("layer3",)

    def __init__(self, info, modality, options, teacher=None, teacher_kind=None):
        super().__init__(info, modality, options, teacher, teacher_kind)
        self.regressor = nn.Conv2d(256, 256, kernel_size=1)

    def distill_features(self, student, teacher, student_features, teacher_features, batch, epoch):
        ce = F.cross_entropy(student, batch.labels(self.modality))
        hint = F.mse_loss(self.regressor(student_features["layer3"]), teacher_features["layer3"])
        return ce + hint, {"ce": ce, "hint": hint}
