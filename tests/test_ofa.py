"""OFA: the target-enhanced loss against closed forms and an independent float64 numpy computation, the
branch heads built from each student's own stages (the authors' shapes), the refusal of a vector
encoder, gradients into the student and its branches (never the teacher), end-to-end training from real
teachers in both scenarios with and without LSKD, and a heterogeneous pair planned."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from helpers import assert_gradients_reach_the_student_only, distilled_trial, method_with_teacher, train_batch

from cmkd.errors import UserError
from cmkd.methods import get_method
from cmkd.methods.ofa_losses import ofa_loss


def test_eps_one_is_cross_entropy_with_the_teachers_probabilities_and_eps_two_weights_the_target():
    s, t, y = torch.zeros(1, 2), torch.tensor([[math.log(3), 0.0]]), torch.tensor([0])
    # p_s = (1/2, 1/2), p_t = (3/4, 1/4): -(3/4 + 1/4) log(1/2)
    assert float(ofa_loss(s, t, y, eps=1.0)) == pytest.approx(math.log(2), rel=1e-6)
    # eps 2: target weight (3/4 + 1)^2 - 1 = 33/16, the other (1/4)^2 = 1/16
    assert float(ofa_loss(s, t, y, eps=2.0)) == pytest.approx(34 / 16 * math.log(2), rel=1e-6)


def _numpy_ofa(s, t, y, eps, T):
    def softmax(z):
        e = np.exp(z / T - (z / T).max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    mask = np.eye(s.shape[1])[y]
    return float(np.mean(-(((softmax(t) + mask) ** eps - mask) * np.log(softmax(s))).sum(1)))


def test_ofa_loss_against_numpy():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(7, 5, generator=g, dtype=torch.float64), 3 * torch.randn(7, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    for eps, T in ((1.0, 1.0), (1.5, 2.0)):
        assert float(ofa_loss(s, t, y, eps, T)) == pytest.approx(_numpy_ofa(s.numpy(), t.numpy(), y.numpy(), eps, T),
                                                                 rel=1e-9)


def test_branches_follow_each_students_stages(teachers):
    method, data, split = method_with_teacher(teachers, "ofa")
    assert method.stages == ("stage1", "stage2", "stage3", "stage4")
    x = train_batch(data, split).x["depth"]
    _, feats = method.net.forward_features(x, method.stages)
    for s in method.stages:
        assert method.branches[s](feats[s]).shape == (x.shape[0], method.info.n_classes)
    convs = [m for m in method.branches["stage1"].modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs if c.kernel_size == (1, 1)] == [64, 128, 128, 256, 256, 512]
    assert isinstance(method.branches["stage4"][0], torch.nn.Conv2d)  # the last stage: one 1 x 1 convolution
    cls = get_method("ofa")
    cifar = cls(dataclasses.replace(method.info, arch="resnet20", width=16), "depth", cls.Options())
    assert cifar.stages == ("stage1", "stage2", "stage3")
    with pytest.raises(UserError, match="ofa puts branch heads on the student's stages, but the mlp encoder"):
        cls.check(dataclasses.replace(method.info, arch="mlp"), "depth", cls.Options())


def test_gradients_reach_the_student_and_its_branches_never_the_teacher(teachers):
    method, data, split = method_with_teacher(teachers, "ofa")
    total, parts = method.loss(train_batch(data, split), 0)
    assert_gradients_reach_the_student_only(method, total)
    assert all(p.grad is not None for p in method.branches.parameters())
    assert float(parts["branches"]) > 0 and float(parts["kd"]) > 0


def test_a_heterogeneous_pair_is_planned():
    from cmkd.harness.sweep.bench_config import load_config
    from cmkd.harness.sweep.plan import build_plan

    cfg = load_config("smoke", overrides=["methods=['ofa']", "scenarios=['cross-modal']",
                                          "pairs=[{teacher='resnet34', student='mobilenet_v3_small'}]"])
    assert any(p.spec.method == "ofa" and p.spec.arch == "mobilenet_v3_small" for p in build_plan(cfg))


@pytest.mark.parametrize("scenario", ["cross-modal", "multi-modal"])
@pytest.mark.parametrize("lskd", [False, True], ids=["orig", "lskd"])
def test_ofa_trains_end_to_end_from_a_real_teacher(teachers, scenario, lskd):
    res = distilled_trial(teachers, "ofa", scenario, lskd)
    assert all(h["train/branches"] > 0 for h in res.history)
