"""WTTM: the transformed-teacher term against closed forms (exponent 1 is Hinton KD at T 1, exponent 0
a uniform teacher weighted by the class count) and an independent float64 numpy computation,
gradients, and end-to-end training from real teachers in both scenarios, with and without LSKD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_gradients_reach_the_student_only, distilled_trial, method_with_teacher, train_batch

from cmkd.methods.kd_losses import kd_loss
from cmkd.methods.wttm_losses import transformed_teacher, wttm_loss, wttm_term


def test_exponent_one_is_kd_at_temperature_one():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    assert float(wttm_term(s, t, power=1.0)) == pytest.approx(float(kd_loss(s, t, 1.0)), rel=1e-12)


def test_exponent_zero_is_a_uniform_teacher_weighted_by_the_class_count():
    # p_t^0 = 1 per class: weight C = 2, q uniform; student (3/4, 1/4): KL(u || p_s) = log(4/3) / 2
    s, t = torch.tensor([[math.log(3), 0.0]]), torch.tensor([[5.0, -2.0]])
    assert float(wttm_term(s, t, power=0.0)) == pytest.approx(math.log(4 / 3), rel=1e-6)
    # exponent 1/2 on a teacher (0.8, 0.2): q = (2/3, 1/3), weight sqrt(0.8) + sqrt(0.2)
    q, w = transformed_teacher(torch.tensor([[math.log(4), 0.0]], dtype=torch.float64), 0.5)
    assert torch.allclose(q, torch.tensor([[2 / 3, 1 / 3]], dtype=torch.float64))
    assert float(w) == pytest.approx(math.sqrt(0.8) + math.sqrt(0.2), rel=1e-12)


def _numpy_wttm(s, t, power):
    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    powered = softmax(t) ** power
    weight = powered.sum(1)
    q = powered / weight[:, None]
    return float(np.mean(weight * (q * (np.log(q) - np.log(softmax(s)))).sum(1)))


def test_wttm_against_numpy():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 6, generator=g, dtype=torch.float64), 4 * torch.randn(8, 6, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    expected = _numpy_wttm(s.numpy(), t.numpy(), 0.2)
    total, parts = wttm_loss(s, t, y, ce_weight=0.5, weight=4.0, power=0.2, kd_weight=0.9, kd_temperature=4.0)
    assert float(parts["wttm"]) == pytest.approx(expected, rel=1e-9)
    ce = float(torch.nn.functional.cross_entropy(s, y))
    kd = float(kd_loss(s, t, 4.0))
    assert float(total) == pytest.approx(0.5 * ce + 4.0 * expected + 0.9 * kd, rel=1e-9)
    _, no_kd = wttm_loss(s, t, y)
    assert "kd" not in no_kd  # the default adds no Hinton term


def test_a_teacher_probability_that_underflows_adds_nothing():
    s, t = torch.zeros(1, 3), torch.tensor([[0.0, 0.0, -200.0]])  # softmax underflows to 0 in float32
    value = wttm_term(s, t, power=1.0)
    assert math.isfinite(float(value)) and float(value) == pytest.approx(math.log(1.5), rel=1e-6)


def test_gradients_reach_the_student_never_the_teacher(teachers):
    method, data, split = method_with_teacher(teachers, "wttm")
    total, parts = method.loss(train_batch(data, split), 0)
    assert_gradients_reach_the_student_only(method, total)
    assert float(parts["wttm"]) > 0


@pytest.mark.parametrize("scenario", ["cross-modal", "multi-modal"])
@pytest.mark.parametrize("lskd", [False, True], ids=["orig", "lskd"])
def test_wttm_trains_end_to_end_from_a_real_teacher(teachers, scenario, lskd):
    res = distilled_trial(teachers, "wttm", scenario, lskd)
    assert all(h["train/wttm"] > 0 for h in res.history)
