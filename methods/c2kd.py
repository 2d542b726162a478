"""C2KD (Huo et al. CVPR 2024): bridging the modality gap with bidirectional distillation between
*proxies* and on-the-fly selection of what to distil.

Each network gets a small proxy head on a stage's feature map (average pooling, 1x1 convolution, BatchNorm,
LeakyReLU 0.1, linear classifier). Each network and its proxy learn from each other (KL both ways);
the two proxies learn from each other (KL both ways) on the *selected* samples, those whose proxies rank
the classes alike (Kendall's tau of their logits above ``krc``), and on the *non-target* classes only.
The teacher is trained too: a copy of the loaded teacher is fine-tuned with the student (the frozen
original is never modified), and only the student is evaluated and deployed.

Read from the authors' code (``huofushuo/C2KD``, AVE ``main_overlap_tag.py``, ``utils/helper.py``,
``utils/module.py``, ``utils/model_res.py``) where the paper is silent; each choice is an option:
- ``proxy_stage`` "stage3" (ResNet-18's layer3): the proxies read ``f4``, which ``model_res.py`` sets to the
  layer3 output (256 channels), not layer4; each proxy is sized from its own network's map;
- ``krc`` 0.0: the authors' default threshold on Kendall's tau (scipy's tau-b, per sample);
- ``non_target`` "zeroed": their ``ntkl`` multiplies the logits by the non-target mask, so the target
  logit becomes 0 and stays in the softmax; "removed" drops it (the paper's non-target distribution);
- temperature 1 everywhere, KL batch-mean, the class term averaged over the whole batch (masked samples
  count in the denominator), every term weight 1, CE on both networks;
- ``train_teacher`` true: their optimiser holds the teacher's parameters and the teacher trains in
  train mode (false: only the teacher's proxy learns; the teacher stays frozen, in eval mode);
- not followed: their SGD (lr 1e-2, momentum 0.9, polynomial decay) and epochs; every method here trains
  with the harness's optimiser and protocol.
The multi-modal teacher's proxy reads the fused (summed) map of the stage. With ``lskd`` the two
proxy-to-proxy terms compare z-scored logits (the selection ranks are unchanged by z-scoring).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import Tensor, nn

from .backbones import STAGE_CHOICES, build_teacher_network, stage_shape
from .base import Batch, DataInfo, MethodOptions
from .c2kd_losses import c2kd_loss
from .options import option
from .distill import DistilledStudent
from .registry import register_method
from .precision import full


@dataclass(frozen=True)
class C2KDOptions(MethodOptions):
    lskd: bool = option(False, "z-scored logits in the two proxy-to-proxy terms (LSKD)")
    krc: float = option(0.0, "a sample is distilled when Kendall's tau of the proxies' logits exceeds this (authors: 0)",
                        low=-1, high=1)
    non_target: str = option("zeroed", "target logit zeroed (authors' code) or removed (paper) in the class term",
                             choices=("zeroed", "removed"))
    proxy_stage: str = option("stage3", "the stage both proxies read (authors' code: ResNet-18's layer3)",
                              choices=STAGE_CHOICES)
    train_teacher: bool = option(True, "fine-tune a copy of the teacher with the student (authors' code)")


class Proxy(nn.Module):
    """The authors' proxy head: pool, 1x1 conv (no bias), BatchNorm, LeakyReLU(0.1), linear."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.LeakyReLU(0.1)
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, feature_map: Tensor) -> Tensor:
        x = self.act(self.bn(self.conv(feature_map.mean((2, 3), keepdim=True))))
        return self.fc(x.flatten(1))


@register_method("c2kd")
class C2KD(DistilledStudent):
    description = "C2KD: bidirectional proxy distillation on selected samples (Kendall tau) and non-target classes"
    label = "C2KD"
    Options = C2KDOptions

    def __init__(self, info: DataInfo, modality: str | None, options: MethodOptions, teacher: nn.Module | None = None,
                 teacher_kind: str | None = None):
        super().__init__(info, modality, options, teacher, teacher_kind)
        o = self.options
        self.feature_stages = (o.proxy_stage,)
        if o.train_teacher:  # the fine-tuned copy is ours (trained, checkpointed); the loaded teacher stays as it is
            net = copy.deepcopy(teacher) if teacher is not None else build_teacher_network(info, teacher_kind or "cross-modal")
            self.teacher_net = net.requires_grad_(True)
        self.student_proxy = Proxy(stage_shape(info, modality, o.proxy_stage)[0], info.n_classes)
        self.teacher_proxy = Proxy(stage_shape(info, info.rich, o.proxy_stage, teacher=True)[0], info.n_classes)

    @classmethod
    def variant(cls, options) -> str:
        return "lskd" if options.lskd else "orig"

    @classmethod
    def epoch_cost(cls, info: DataInfo) -> float:
        return 2.3  # the teacher's backward pass too

    def loss(self, batch: Batch, epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        o, stage = self.options, self.options.proxy_stage
        s, s_feats = self.net.forward_features(batch.x[self.modality], (stage,))
        if o.train_teacher:
            t, t_feats = self.teacher_net.forward_features(self.teacher_input(batch.x), (stage,))
        else:
            self.teacher.eval()
            t, t_feats = self.teacher.forward_features(self.teacher_input(batch.x), (stage,))
        sp, tp = self.student_proxy(s_feats[stage]), self.teacher_proxy(t_feats[stage])
        return c2kd_loss(full(s), full(t), full(sp), full(tp), batch.labels(self.modality), o.krc,
                         o.non_target, o.lskd)
