"""SDD (SD-KD): the sub-region pyramid, the region weights and the weighted KD term against closed forms
and an independent float64 numpy computation; the last stage per architecture family and the one-line
refusal of an encoder whose classifier does not pool its last stage; gradients; end-to-end training from
real teachers in both scenarios, with and without LSKD."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import assert_gradients_reach_the_student_only, distilled_trial, method_with_teacher, train_batch

from cmkd.errors import UserError
from cmkd.methods import get_method
from cmkd.methods.kd_losses import kd_loss
from cmkd.methods.sdd_losses import region_features, region_logits, region_weights, sdd_kd_term


def test_the_pyramid_of_a_4x4_map_is_its_mean_quadrants_and_cells_in_the_authors_order():
    fmap = torch.arange(32, dtype=torch.float64).view(1, 2, 4, 4)
    feats = region_features(fmap)
    assert feats.shape == (1, 2, 21)
    assert torch.allclose(feats[0, :, 0], fmap[0].mean((1, 2)))  # 1 x 1 first
    quadrants = fmap[0].view(2, 2, 2, 2, 2).mean((2, 4)).flatten(1)  # 2 x 2, row by row
    assert torch.allclose(feats[0, :, 1:5], quadrants)
    assert torch.equal(feats[0, :, 5:], fmap[0].flatten(1))  # the 16 cells
    assert region_features(fmap, (1, 2)).shape == (1, 2, 5)
    # the global region through the head is the network's own logits when the map divides by 4
    head = torch.nn.Linear(2, 3).double()
    assert torch.allclose(region_logits(head, fmap)[:, :, 0], head(fmap.mean((2, 3))))


def test_a_1x1_map_makes_every_region_the_global_one_and_the_term_hinton_kd():
    g = torch.Generator().manual_seed(0)
    fs = torch.randn(5, 8, 1, 1, generator=g, dtype=torch.float64)
    ft = torch.randn(5, 8, 1, 1, generator=g, dtype=torch.float64)
    head_s, head_t = torch.nn.Linear(8, 4).double(), torch.nn.Linear(8, 4).double()
    s, t = region_logits(head_s, fs), region_logits(head_t, ft)
    y = torch.tensor([0, 1, 2, 3, 0])
    assert torch.equal(region_weights(t, y), torch.ones(5, 21, dtype=torch.float64))
    expected = kd_loss(head_s(fs.flatten(1)), head_t(ft.flatten(1)), 4.0)
    assert float(sdd_kd_term(s, t, y, 4.0)) == pytest.approx(float(expected), rel=1e-12)


def test_local_regions_that_disagree_with_the_global_decision_count_twice():
    # 1 sample, 2 classes, 3 regions: global predicts class 0 (right); region 1 predicts 1 (wrong); region 2 right
    t = torch.tensor([[[2.0, 1.0, 3.0], [0.0, 4.0, 0.0]]])
    assert region_weights(t, torch.tensor([0])).tolist() == [[1.0, 2.0, 1.0]]
    # with label 1 the global decision is wrong: region 1 (right) counts twice, region 2 (wrong) once
    assert region_weights(t, torch.tensor([1])).tolist() == [[1.0, 2.0, 1.0]]
    t2 = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 4.0, 5.0]]])  # global 0, regions 1 and 2 predict 1
    assert region_weights(t2, torch.tensor([1])).tolist() == [[1.0, 2.0, 2.0]]


def _numpy_sdd(s, t, y, T):
    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    B, C, R = s.shape
    total = 0.0
    for b in range(B):
        global_right = t[b, :, 0].argmax() == y[b]
        for r in range(R):
            ps, pt = softmax(s[b:b + 1, :, r] / T)[0], softmax(t[b:b + 1, :, r] / T)[0]
            kl = T * T * (pt * (np.log(pt) - np.log(ps))).sum()
            w = 1.0 if r == 0 or (t[b, :, r].argmax() == y[b]) == global_right else 2.0
            total += w * kl
    return total / (B * R)


def test_sdd_against_numpy():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(6, 5, 21, generator=g, dtype=torch.float64)
    t = 3 * torch.randn(6, 5, 21, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    expected = _numpy_sdd(s.numpy(), t.numpy(), y.numpy(), 4.0)
    assert float(sdd_kd_term(s, t, y, 4.0)) == pytest.approx(expected, rel=1e-9)
    weights = region_weights(t, y)
    assert 0 < int((weights == 2).sum()) < weights.numel() - 6  # the random case exercises both weights


def test_the_last_stage_is_each_familys_own_and_an_unpooled_last_stage_is_refused(teachers):
    method, data, _ = method_with_teacher(teachers, "sdd")
    assert method.last == "stage4" and method.teacher_last == "stage4"
    cls = get_method("sdd")
    info = dataclasses.replace(method.info, arch="resnet20", width=16)
    assert cls(info, "depth", cls.Options()).last == "stage3"  # the CIFAR ResNet's last stage, as the authors'
    with pytest.raises(UserError, match=r"stage4 has 96 channels and its pooled vector 1024: choose an architecture"):
        cls(dataclasses.replace(method.info, arch="mobilenet_v3_small"), "depth", cls.Options())


def test_a_pair_sdd_cannot_read_is_refused_when_planned():
    from cmkd.harness.sweep.bench_config import load_config
    from cmkd.harness.sweep.plan import build_plan

    cfg = load_config("smoke", overrides=["methods=['sdd']", "scenarios=['cross-modal']",
                                          "pairs=[{teacher='resnet34', student='mobilenet_v3_small'}]"])
    with pytest.raises(UserError, match="sdd puts sub-regions of the student's last map through its classifier"):
        build_plan(cfg)
    ok = load_config("smoke", overrides=["methods=['sdd']", "scenarios=['cross-modal']",
                                         "pairs=[{teacher='wrn_40_2', student='wrn_16_2'}]"])
    assert any(p.spec.method == "sdd" for p in build_plan(ok))


def test_gradients_reach_the_student_and_its_head_never_the_teacher(teachers):
    method, data, split = method_with_teacher(teachers, "sdd")
    total, parts = method.loss(train_batch(data, split), 0)
    parts["kd"].backward(retain_graph=True)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.net.head.parameters())
    assert_gradients_reach_the_student_only(method, total)


@pytest.mark.parametrize("scenario", ["cross-modal", "multi-modal"])
@pytest.mark.parametrize("lskd", [False, True], ids=["orig", "lskd"])
def test_sdd_trains_end_to_end_from_a_real_teacher(teachers, scenario, lskd):
    res = distilled_trial(teachers, "sdd", scenario, lskd)
    assert all(h["train/kd"] > 0 for h in res.history)
