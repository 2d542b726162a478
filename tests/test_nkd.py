"""NKD: its target and non-target terms against closed forms and an independent float64 numpy
computation, gradients (the teacher's target probability is a constant), and end-to-end training from
real teachers in both scenarios, with and without LSKD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_gradients_reach_the_student_only, distilled_trial, method_with_teacher, train_batch

from cmkd.methods.nkd_losses import nkd_loss, nkd_terms


def test_two_classes_leave_only_the_target_term():
    # one non-target class: its normalised distribution is 1 for both, so the non-target term is 0; the
    # target term is -p_t(y) log p_s(y) = -(3/4) log(1/2)
    s, t, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3), 0.0]]), torch.tensor([0])
    target, non = nkd_terms(s, t, y, temperature=3.0, gamma=3.5)
    assert float(target) == pytest.approx(0.75 * math.log(2), rel=1e-6) and float(non) == pytest.approx(0, abs=1e-7)
    total, _ = nkd_loss(s, t, y)
    assert float(total) == pytest.approx(math.log(2) + 0.75 * math.log(2), rel=1e-6)  # + CE = log 2


def test_a_uniform_student_gives_gamma_t2_log_of_the_non_target_count():
    # the student's non-target distribution is uniform over 2 classes: sum_c q_t log(1/2) = -log 2 for any
    # teacher, so the term is gamma T^2 log 2 whatever the teacher says
    s, t, y = torch.zeros(1, 3), torch.tensor([[0.0, math.log(3), 0.0]]), torch.tensor([0])
    _, non = nkd_terms(s, t, y, temperature=3.0, gamma=3.5)
    assert float(non) == pytest.approx(3.5 * 9 * math.log(2), rel=1e-6)


def _numpy_nkd(s, t, y, T, gamma):
    def log_softmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    n = len(y)
    pt = np.exp(log_softmax(t))
    target = -np.mean([pt[i, y[i]] * log_softmax(s)[i, y[i]] for i in range(n)])
    keep = [np.delete(np.arange(s.shape[1]), y[i]) for i in range(n)]
    s_nt = np.stack([s[i, keep[i]] for i in range(n)]) / T
    t_nt = np.stack([t[i, keep[i]] for i in range(n)]) / T
    non = -gamma * T * T * np.mean((np.exp(log_softmax(t_nt)) * log_softmax(s_nt)).sum(1))
    return target, non


def test_nkd_against_numpy():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(7, 5, generator=g, dtype=torch.float64), 3 * torch.randn(7, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 2, 0])
    target, non = _numpy_nkd(s.numpy(), t.numpy(), y.numpy(), 3.0, 3.5)
    total, parts = nkd_loss(s, t, y, ce_weight=0.5)
    assert float(parts["target"]) == pytest.approx(target, rel=1e-9)
    assert float(parts["non_target"]) == pytest.approx(non, rel=1e-9)
    ce = float(torch.nn.functional.cross_entropy(s, y))
    assert float(total) == pytest.approx(0.5 * ce + target + non, rel=1e-9)


def test_the_teachers_target_probability_is_a_constant_weight():
    t = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    s = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    target, _ = nkd_terms(s, t, torch.tensor([0, 1, 2, 3]))
    target.backward()
    assert t.grad is None and s.grad.abs().sum() > 0


def test_gradients_reach_the_student_never_the_teacher(teachers):
    method, data, split = method_with_teacher(teachers, "nkd")
    total, parts = method.loss(train_batch(data, split), 0)
    assert_gradients_reach_the_student_only(method, total)
    assert float(parts["non_target"]) > 0 and float(parts["target"]) > 0


@pytest.mark.parametrize("scenario", ["cross-modal", "multi-modal"])
@pytest.mark.parametrize("lskd", [False, True], ids=["orig", "lskd"])
def test_nkd_trains_end_to_end_from_a_real_teacher(teachers, scenario, lskd):
    res = distilled_trial(teachers, "nkd", scenario, lskd)
    assert all(h["train/non_target"] > 0 for h in res.history)
