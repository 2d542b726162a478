"""DisCoM-KD: one joint training, no teacher, one deployable classifier per modality.

Per modality m: a modality-specific encoder (ResNet-18 in the paper; any architecture of ``--arch``) whose
D-d output (512) is cut into z_inf (first D/2, as the official code) and z_irr (last D/2); a
modality-invariant encoder with a projection head (Linear D->D/2 + BatchNorm1d + ReLU, as the official
code) giving z_inv; a task classifier on
[z_inv || z_inf]. Shared heads: a modality discriminator behind a gradient-reversal layer on z_inv,
modality classifiers on z_inf and on z_irr, an auxiliary task classifier on z_inv and on z_inf.
For M > 2 modalities the modality heads are M-way (the paper's open question).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import Tensor, nn

from cmkd.errors import UserError

from .backbones import arch_name, encoder_for, feature_dim_of
from .base import Batch, DataInfo, Method, MethodOptions
from .options import option, validate
from .discomkd_losses import (MODALITY_TARGETS, PERP_MODES, REDUCTIONS, adversarial_loss, auxiliary_loss, classification_loss,
                              modality_loss, orthogonality_loss)
from .kd_losses import grad_reverse
from .registry import register_method

#: the paper's ablations: Table 3 (a loss term removed), Table 4 (the task classifier's input)
ABLATIONS: dict[str, str] = {
    "no-adv": "without L_adv", "no-mod": "without L_mod", "no-aux": "without L_aux", "no-orth": "without L_perp",
    "only-inv": "task classifier on z_inv only", "only-inf": "task classifier on z_inf only",
}
TERMS = ("cl", "adv", "mod", "aux", "perp")
#: named sets of options; ``released-code`` reproduces the loss of the authors' released script
#: (``main_DisCoM-KD.py``): one-hot-free ones/zeros modality targets, each term one mean over the
#: concatenated modalities (L_mod over 2M parts), each modality shuffled on its own, signed cosines
PRESETS: dict[str, dict[str, str]] = {
    "released-code": {"modality_targets": "official", "reduction": "concat-mean", "batches": "unpaired",
                      "perp": "signed"},
}


@dataclass(frozen=True)
class DisCoMKDOptions(MethodOptions):
    ablation: str = option("", "the full method, or a term removed (Table 3) / the task head's input (Table 4)",
                           choices=("", *ABLATIONS))
    modality_targets: str = option("index", "index: the paper's modality labels; official: the released code's "
                                            "ones/zeros targets", choices=MODALITY_TARGETS)
    perp: str = option("signed", "L_perp: signed cosine (paper and code) or absolute (orthogonality)", choices=PERP_MODES)
    batches: str = option("unpaired", "unpaired: each modality shuffled on its own (released code); paired",
                          choices=("unpaired", "paired"))
    reduction: str = option("sum", "sum over modalities (paper) or concat-mean (released code: one mean per term)",
                            choices=REDUCTIONS)
    preset: str = option("", "sets several options at once: released-code", choices=("", *PRESETS))
    grl_lambda: float = option(1.0, "gradient-reversal strength in front of the modality discriminator", low=0)
    w_cl: float = option(1.0, "weight of L_cl", low=0)
    w_adv: float = option(1.0, "weight of L_adv", low=0)
    w_mod: float = option(1.0, "weight of L_mod", low=0)
    w_aux: float = option(1.0, "weight of L_aux", low=0)
    w_perp: float = option(1.0, "weight of L_perp", low=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preset:
            defaults = {f.name: f.default for f in fields(self)}
            for name, value in PRESETS[self.preset].items():
                if getattr(self, name) == defaults[name]:
                    object.__setattr__(self, name, value)
                elif getattr(self, name) != value:
                    raise UserError(f"option {name}={getattr(self, name)!r} conflicts with preset {self.preset!r} "
                                    f"(which sets {name}={value!r}); drop one of them")
        validate(self)  # again: the preset's values too

    def task_input(self) -> str:
        return {"only-inv": "inv", "only-inf": "inf"}.get(self.ablation, "both")

    def active_terms(self) -> tuple[str, ...]:
        removed = {"no-adv": "adv", "no-mod": "mod", "no-aux": "aux", "no-orth": "perp"}.get(self.ablation)
        return tuple(t for t in TERMS if t != removed)


class DisCoMKDClassifier(nn.Module):
    """One modality's deployable model: its two encoders, projection head and task head."""

    def __init__(self, build_encoder, n_classes: int, task_input: str = "both"):
        super().__init__()
        self.specific = build_encoder()
        self.invariant = build_encoder()
        self.d = d = self.specific.feature_dim // 2  # the halves of the encoder's output
        self.project = nn.Sequential(nn.Linear(2 * d, d), nn.BatchNorm1d(d), nn.ReLU())
        self.task_input = task_input
        self.head = nn.Linear(2 * d if task_input == "both" else d, n_classes)

    def features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(z_inv, z_inf, z_irr), each B x d (half the encoder's pooled width: 256 for ResNet-18)."""
        spec = self.specific(x)
        return self.project(self.invariant(x)), spec[:, :self.d], spec[:, self.d:]

    def classify(self, z_inv: Tensor, z_inf: Tensor) -> Tensor:
        if self.task_input == "inv":
            return self.head(z_inv)
        if self.task_input == "inf":
            return self.head(z_inf)
        return self.head(torch.cat([z_inv, z_inf], dim=1))

    def forward(self, x: Tensor) -> Tensor:
        z_inv, z_inf, _ = self.features(x)
        return self.classify(z_inv, z_inf)


@register_method("discomkd")
class DisCoMKD(Method):
    description = "DisCoM-KD: joint disentangled training, one deployable classifier per modality (no teacher)"
    label = "DisCoM-KD"
    paper_row = 6
    ablations = {"no-adv": (3, "w/o L_adv"), "no-mod": (3, "w/o L_mod"), "no-aux": (3, "w/o L_aux"),
                 "no-orth": (3, "w/o L_perp"), "only-inv": (4, "z_inv only"), "only-inf": (4, "z_inf only")}
    Options = DisCoMKDOptions
    joint_augmentation: ClassVar[bool] = False  # each modality augmented on its own (official code)
    export_models: ClassVar[bool] = True

    def __init__(self, info: DataInfo, modality: str | None, options: MethodOptions, teacher: nn.Module | None = None,
                 teacher_kind: str | None = None):
        super().__init__(info, modality, options, teacher, teacher_kind)
        o: DisCoMKDOptions = self.options  # type: ignore[assignment]
        self.mods = list(info.channels)
        M, K = len(self.mods), info.n_classes
        self.branches = nn.ModuleDict({m: DisCoMKDClassifier(lambda m=m: encoder_for(info, m), K, o.task_input())
                                       for m in info.channels})
        d = self.branches[self.mods[0]].d
        self.discriminator = nn.Linear(d, M)  # Cl_adv, behind the GRL
        self.mod_inf = nn.Linear(d, M)  # Cl_m-inf
        self.mod_irr = nn.Linear(d, M)  # Cl_m-irr
        self.aux = nn.Linear(d, K)  # Cl_aux

    @classmethod
    def variant(cls, options: MethodOptions) -> str:
        return options.ablation  # type: ignore[attr-defined]

    @classmethod
    def epoch_cost(cls, info: DataInfo) -> float:
        return 2.0 * len(info.channels)  # two encoders per modality

    @classmethod
    def check(cls, info: DataInfo, modality: str | None, options: MethodOptions) -> None:
        if modality is not None:
            raise UserError("discomkd trains one classifier per modality in one run: drop --modality")
        if len(info.channels) < 2:
            raise UserError(f"discomkd needs at least two modalities; {info.name!r} has {list(info.channels)}")
        dims = {m: feature_dim_of(info, m) for m in info.channels}
        if len(set(dims.values())) > 1 or any(d % 2 for d in dims.values()):
            names = ", ".join(f"{m}: {arch_name(info, m)} ({d})" for m, d in dims.items())
            raise UserError(f"discomkd cuts each encoder's pooled features in halves and shares its heads across "
                            f"modalities: it needs one even pooled width for every modality, got {names}; give every "
                            "modality an architecture of the same pooled width (--arch NAME)")

    def outputs(self) -> list[str]:
        return list(self.mods)

    def paired_batches(self) -> bool:
        return self.options.batches == "paired"  # type: ignore[attr-defined]

    def loss(self, batch: Batch, epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        o: DisCoMKDOptions = self.options  # type: ignore[assignment]
        z_inv, z_inf, z_irr, task = {}, {}, {}, {}
        for m in self.mods:
            br = self.branches[m]
            z_inv[m], z_inf[m], z_irr[m] = br.features(batch.x[m])
            task[m] = br.classify(z_inv[m], z_inf[m])
        labels = {m: batch.labels(m) for m in self.mods}
        active = o.active_terms()
        red = o.reduction
        terms: dict[str, Tensor] = {}
        if "cl" in active:
            terms["cl"] = o.w_cl * classification_loss(task, labels, red)
        if "adv" in active:
            disc = {m: self.discriminator(grad_reverse(z_inv[m], o.grl_lambda)) for m in self.mods}
            terms["adv"] = o.w_adv * adversarial_loss(disc, o.modality_targets, red)
        if "mod" in active:
            terms["mod"] = o.w_mod * modality_loss({m: self.mod_inf(z_inf[m]) for m in self.mods},
                                                   {m: self.mod_irr(z_irr[m]) for m in self.mods}, o.modality_targets, red)
        if "aux" in active:
            terms["aux"] = o.w_aux * auxiliary_loss({m: self.aux(z_inv[m]) for m in self.mods},
                                                    {m: self.aux(z_inf[m]) for m in self.mods}, labels, red)
        if "perp" in active:
            terms["perp"] = o.w_perp * orthogonality_loss(z_inv, z_inf, z_irr, o.perp, red)
        return sum(terms.values()), terms  # type: ignore[return-value]

    def predict(self, x: dict[str, Tensor]) -> dict[str, Tensor]:
        return {m: self.branches[m](x[m]) for m in self.mods}

    def export(self, key: str) -> nn.Module:
        return self.branches[key]
