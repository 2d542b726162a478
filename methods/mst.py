"""MST-Distill (Li et al., ACM MM 2025): a mixture of specialised teachers, masked and routed per sample
(:mod:`cmkd.methods.mst_losses`).

The teachers are a multi-modal network and one auxiliary network per other modality (the authors' data
have two modalities: one auxiliary, on the modality the student does not read). A *specialised teacher*
is one of them with one feature layer gated by its own masking module. Three stages in one trial:
1. co-training: the teachers and the student learn from the labels and from each other;
2. masking: each masking module learns to make its teacher agree with the (frozen) student; the
   modules are selected by their validation loss (the engine's ``validation_pass``);
3. routed distillation: a gate reads the student's logits and picks the top-k specialised teachers of
   each sample; the student learns CE + KD from them + a balance term on the gate.

Defaults from the authors' ``main-MST-Distill.py`` (``Gray-OREO/MST-Distill``, commit 093b2fe):
``--epochs_s1 1`` (line 61) and ``--epochs_s2 1`` (line 63): one co-training and one masking epoch, the
rest of the trial's epochs distil (``--epochs 100``, line 65); ``--mask_layer_num 2`` (line 47),
``--mask_head_num 3`` (49), ``--hidden_dim_factor 2`` (45), ``--k 1`` (51), ``--lb_mode KL`` (53),
``--w_task``/``--w_kl``/``--w_lb`` 1 (55-59), their decay (lines 526-527), T 4 (``KD_methods/MST.py``
``distillation_loss``, line 239), masking modules selected by validation loss (line 340).

Their networks are built from scratch in ``main-MST-Distill.py`` (lines 130-132 load no weights):
``teacher_init`` "scratch" is that; "loaded" starts the multi-modal network from the trained teacher of
the trial's scenario. Layers masked: the authors name two late layers per network (e.g. a fused vector
and the next hidden layer); here, per network, the last stage map of its encoder(s) (a 1x1 map is masked
as a vector, as their ``MaskNet_1d`` rule does) and the pooled vector its head reads (for the multi-modal
network: the fused sum); ``mask_layers`` 1 keeps the map. Not theirs: every stage uses the protocol's
optimiser and learning rate (theirs: Adam 1e-4 in each stage), and the student's best epoch is chosen by
validation F1 as for every method (theirs: validation loss), among stage-3 epochs as theirs is. The
masking modules hold D x (D // (factor x heads) x heads) x D weights for a D-channel feature (67 M at 512
channels, the paper's ResNet-18): their design's cost. ``--lskd`` z-scores both sides of stage 3's KD.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cmkd.errors import UserError

from .backbones import POOL, Classifier, build_teacher_network, encoder_for, pooled_gated, stage_names, stage_shape
from .base import Batch, DataInfo, MethodOptions
from .distill import TEMPERATURE, WEIGHT, DistilledStudent
from .mst_losses import load_balance, mask_fit_loss, mutual_loss, routed_kd, stage3_weights, stage_ends
from .options import option
from .registry import register_method
from .precision import full

MAP = "map"  # a network's last stage map (per encoder)


@dataclass(frozen=True)
class MSTOptions(MethodOptions):
    lskd: bool = option(False, "z-scored logits on both sides of stage 3's KD term (LSKD)")
    co_epochs: int = option(1, "stage 1: co-training epochs (--epochs_s1)", low=1)
    mask_epochs: int = option(1, "stage 2: masking-module epochs (--epochs_s2); the rest distil", low=1)
    mask_layers: int = option(2, "layers masked per network: the last map, then the pooled vector (--mask_layer_num)",
                              low=1, high=2)
    heads: int = option(3, "attention heads of a masking module (--mask_head_num)", low=1)
    hidden_factor: int = option(2, "a masking module's width is D // (factor x heads) x heads (--hidden_dim_factor)",
                                low=1)
    k: int = option(1, "specialised teachers each sample distils from (--k)", low=1)
    balance: str = option("KL", "the gate's load-balancing term (--lb_mode)", choices=("KL", "CV"))
    w_task: float = option(1.0, "stage 3: CE weight (--w_task)", **WEIGHT)
    w_kl: float = option(1.0, "stage 3: KD weight, halved after stage-3 epochs 0, 30, ... (--w_kl)", **WEIGHT)
    w_lb: float = option(1.0, "stage 3: balance weight, x0.9 after stage-3 epochs 0, 10, ... (--w_lb)", **WEIGHT)
    temperature: float = option(4.0, "every KL's temperature (distillation_loss's T)", **TEMPERATURE)
    teacher_init: str = option("scratch", "the multi-modal network's start: scratch (authors' code) or the loaded "
                               "teacher", choices=("scratch", "loaded"))
    mask_selection: str = option("best-val", "masking modules kept: lowest validation loss (authors') or last",
                                 choices=("best-val", "last"))


class SpatialReduction(nn.Module):
    """A map to a vector: depthwise 3x3 stride-2 convolution, 1x1 convolution, BatchNorm, ReLU, average pool."""

    def __init__(self, channels: int):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels, bias=False),
                                  nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.down(x).mean((2, 3))


class MaskNet(nn.Module):
    """The authors' masking module: each of the D channels becomes a token (a Linear D -> hidden x D),
    self-attention over the D tokens, a Linear to one number per token, a sigmoid: a gate per channel."""

    def __init__(self, channels: int, heads: int, factor: int, spatial: bool):
        super().__init__()
        self.channels, self.hidden = channels, channels // (factor * heads) * heads
        self.reduce = SpatialReduction(channels) if spatial else None
        self.embed = nn.Linear(channels, self.hidden * channels)
        self.attn = nn.MultiheadAttention(self.hidden, heads, batch_first=True)
        self.fc = nn.Linear(self.hidden, 1)

    def forward(self, feature: Tensor) -> Tensor:
        v = self.reduce(feature) if self.reduce is not None else feature.flatten(1)
        tokens = self.embed(v).view(len(v), self.channels, self.hidden)
        out, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return torch.sigmoid(self.fc(out).squeeze(-1))


class Gate(nn.Module):
    """The authors' routing network: two Linear layers (C -> 2C -> ways), no activation between them."""

    def __init__(self, n_classes: int, ways: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(n_classes, 2 * n_classes), nn.Linear(2 * n_classes, ways)

    def forward(self, logits: Tensor) -> Tensor:
        return self.fc2(self.fc1(logits))


def stacking_gate(modules: nn.ModuleDict):
    """A map gate that returns the map and its masked copy stacked along the batch (``modules``: a masking
    module per modality)."""
    def gate(stage: str, modality: str | None, feature: Tensor) -> Tensor:
        return torch.cat([feature, modules[modality](feature)[:, :, None, None] * feature])
    return gate


@register_method("mst")
class MSTDistill(DistilledStudent):
    description = "MST-Distill: co-train, fit masked specialised teachers to the student, route each sample to its top-k"
    label = "MST-Distill"
    Options = MSTOptions
    teacher_kinds = ("multi-modal",)
    min_epochs = 3  # a co-training, a masking and a distillation stage

    def __init__(self, info, modality, options, teacher=None, teacher_kind=None):
        super().__init__(info, modality, options, teacher, teacher_kind)
        o = self.options
        mm = copy.deepcopy(teacher) if o.teacher_init == "loaded" and teacher is not None else None
        self.teachers = nn.ModuleDict({"mm": (mm or build_teacher_network(info, "multi-modal")).requires_grad_(True)})
        for m in self.other_modalities(info, modality):
            self.teachers[f"aux_{m}"] = Classifier(encoder_for(info, m, teacher=True), info.n_classes)
        nets = self.network_modalities(info, modality)
        layers = self.masked_layers(info, modality, o)
        self.masks = nn.ModuleDict({f"{net}-{layer}": self._mask(info, mods, layer)
                                    for net, mods in nets.items() for layer in layers})
        #: per network, the last map of each of its encoders, where its map specialist is masked
        self.map_stages = {net: {m: stage_names(info, m, teacher=True)[-1] for m in mods} if MAP in layers else {}
                           for net, mods in nets.items()}
        self.specialists = list(self.masks)
        self.gate = Gate(info.n_classes, len(self.specialists))
        if o.mask_selection == "best-val":  # the kept modules: a copy, never trained (not in the optimiser)
            self.best_masks = copy.deepcopy(self.masks).requires_grad_(False)
            self.register_buffer("best_mask_loss", torch.tensor(float("inf")))
        self.stage2, self.stage3 = 1, 2
        #: how often each specialised teacher was chosen this epoch (on the trial's device: no sync per step)
        self.register_buffer("routes", torch.zeros(len(self.specialists)), persistent=False)

    # ---- declarations ---------------------------------------------------------------------------------
    @staticmethod
    def other_modalities(info: DataInfo, modality: str) -> list[str]:
        return [m for m in info.channels if m != modality]

    @classmethod
    def network_modalities(cls, info: DataInfo, modality: str) -> dict[str, list[str]]:
        return {"mm": list(info.channels), **{f"aux_{m}": [m] for m in cls.other_modalities(info, modality)}}

    @classmethod
    def masked_layers(cls, info: DataInfo, modality: str, o: MSTOptions) -> list[str]:
        nets = cls.network_modalities(info, modality)
        with_maps = all(stage_names(info, m, teacher=True) for mods in nets.values() for m in mods)
        return ([MAP, POOL] if with_maps else [POOL])[:o.mask_layers]

    @classmethod
    def check(cls, info: DataInfo, modality: str | None, options) -> None:
        super().check(info, modality, options)
        o, nets = options, cls.network_modalities(info, modality)
        layers = cls.masked_layers(info, modality, o)
        if len(layers) < o.mask_layers:
            raise UserError(f"method 'mst' masks {o.mask_layers} layers per network, but the teacher architecture "
                            f"{info.teacher_arch!r} has no stage map: pass --set \"method_options={{mst={{mask_layers=1}}}}\"")
        ways = len(nets) * len(layers)
        if o.k > ways:
            raise UserError(f"method 'mst' option k must be at most its {ways} specialised teachers, got {o.k}")
        widths = [stage_shape(info, m, stage_names(info, m, teacher=True)[-1], teacher=True)[0]
                  for mods in nets.values() for m in mods] if MAP in layers else []
        if POOL in layers:
            widths += [max(stage_shape(info, m, POOL, teacher=True)[0] for m in mods) for mods in nets.values()]
        if min(widths) < o.hidden_factor * o.heads:
            raise UserError(f"method 'mst': a {min(widths)}-channel feature is narrower than hidden_factor x heads "
                            f"({o.hidden_factor} x {o.heads}); pass fewer heads or a wider train.width")

    @classmethod
    def epoch_cost(cls, info: DataInfo) -> float:
        # measured (quick profile, 2 modalities, width 8): 919 images/s against a student's 3,185; stage 3 runs
        # each teacher network's trunk forward once besides the student's step
        return 3.5

    def _mask(self, info: DataInfo, modalities: list[str], layer: str) -> nn.Module:
        o = self.options
        if layer == POOL:
            width = max(stage_shape(info, m, POOL, teacher=True)[0] for m in modalities)
            return MaskNet(width, o.heads, o.hidden_factor, spatial=False)
        per = {}
        for m in modalities:
            c, h, w = stage_shape(info, m, stage_names(info, m, teacher=True)[-1], teacher=True)
            per[m] = MaskNet(c, o.heads, o.hidden_factor, spatial=(h, w) != (1, 1))
        return nn.ModuleDict(per)

    # ---- stages ---------------------------------------------------------------------------------------
    def stage(self, epoch: int) -> int:
        return 1 if epoch < self.stage2 else 2 if epoch < self.stage3 else 3

    def on_epoch_start(self, epoch: int, n_epochs: int) -> None:
        self.stage2, self.stage3 = stage_ends(n_epochs, self.options.co_epochs, self.options.mask_epochs)
        stage = self.stage(epoch)
        self.net.requires_grad_(stage != 2)
        self.teachers.requires_grad_(stage == 1)
        self.masks.requires_grad_(stage == 2)
        self.gate.requires_grad_(stage == 3)
        self.routes.zero_()

    def selectable(self, epoch: int, n_epochs: int) -> bool:
        return epoch >= stage_ends(n_epochs, self.options.co_epochs, self.options.mask_epochs)[1]

    def wants_validation_pass(self, epoch: int, n_epochs: int) -> bool:
        return self.options.mask_selection == "best-val" and self.stage(epoch) == 2

    def _inputs(self, net: str, x: dict[str, Tensor]):
        return {m: x[m] for m in self.info.channels} if net == "mm" else x[net.removeprefix("aux_")]

    def _specialists(self, x: dict[str, Tensor], masks: nn.ModuleDict) -> dict[str, Tensor]:
        """Every specialised teacher's logits: per network, one pass of its trunk. With its last map masked,
        the map and its gated copy travel stacked through the rest of the network (eval mode: exact), so the
        pooled-vector specialist reads the plain half and the map specialist the gated one."""
        out = {}
        for net, maps in self.map_stages.items():
            network = self.teachers[net].eval()
            gate = stacking_gate(masks[f"{net}-{MAP}"]) if maps else None
            pooled = pooled_gated(network, self._inputs(net, x), maps, gate)
            if maps:
                plain, gated = pooled.chunk(2)
                out[f"{net}-{MAP}"] = full(network.head(gated))
            else:
                plain = pooled
            if f"{net}-{POOL}" in masks:
                out[f"{net}-{POOL}"] = full(network.head(masks[f"{net}-{POOL}"](plain) * plain))
        return out

    def _mask_losses(self, x: dict[str, Tensor], student: Tensor, masks: nn.ModuleDict) -> dict[str, Tensor]:
        return {k: mask_fit_loss(v, student, self.options.temperature) for k, v in self._specialists(x, masks).items()}

    def validation_pass(self, batches) -> None:
        """Stage 2's selection: the mean over batches of (the multi-modal network's mean mask loss + the
        auxiliaries' mean), the authors' ``Loss_s2_all``; the modules are kept when it is the lowest yet."""
        total, count = 0.0, 0
        for batch in batches:
            losses = self._mask_losses(batch.x, full(self.net(batch.x[self.modality])), self.masks)
            mm = [v for k, v in losses.items() if k.startswith("mm-")]
            aux = [v for k, v in losses.items() if not k.startswith("mm-")]
            total += float(sum(mm) / len(mm) + (sum(aux) / len(aux) if aux else 0.0))
            count += 1
        if count and total / count < float(self.best_mask_loss):
            self.best_mask_loss.fill_(total / count)
            self.best_masks.load_state_dict(self.masks.state_dict())

    def loss(self, batch: Batch, epoch: int):
        stage, o, target = self.stage(epoch), self.options, batch.labels(self.modality)
        if stage == 1:
            logits = {"student": full(self.net(batch.x[self.modality]))}
            logits.update({k: full(net(self._inputs(k, batch.x))) for k, net in self.teachers.items()})
            return mutual_loss(logits, target, o.temperature)
        if stage == 2:
            self.net.eval()
            with torch.no_grad():
                student = full(self.net(batch.x[self.modality]))
            losses = self._mask_losses(batch.x, student, self.masks)
            total = sum(losses.values())
            return total, {"mask_kl": total / len(losses)}
        masks = self.best_masks if o.mask_selection == "best-val" else self.masks
        masks.eval()
        with torch.no_grad():
            logits = self._specialists(batch.x, masks)
            experts = torch.stack([logits[k] for k in self.specialists], dim=1)
        s = full(self.net(batch.x[self.modality]))
        probs = torch.softmax(self.gate(s), dim=1)
        kd, top = routed_kd(s, experts, probs, o.k, o.temperature, o.lskd)
        self.routes += torch.bincount(top.flatten(), minlength=len(self.specialists))
        w_kl, w_lb = stage3_weights(o.w_kl, o.w_lb, epoch - self.stage3)
        ce, lb = torch.nn.functional.cross_entropy(s, target), load_balance(probs, o.balance)
        return o.w_task * ce + w_kl * kd + w_lb * lb, {"ce": ce, "kd": kd, "balance": lb}

    def epoch_metrics(self) -> dict[str, float]:
        total = float(self.routes.sum())
        if not total:
            return {}
        return {f"route_{k}": float(c) / total for k, c in zip(self.specialists, self.routes)}
