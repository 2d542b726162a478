"""DIST: the relations against closed forms and an independent float64 numpy computation, gradients, and
end-to-end training from real teachers in both scenarios, with and without LSKD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_gradients_reach_the_student_only, distilled_trial, method_with_teacher, train_batch

from cmkd.methods.dist_losses import dist_loss, dist_terms


def test_opposite_two_class_predictions_have_correlation_minus_one():
    # two classes: a centred row is (d, -d), so a correlation is the sign of d_s d_t; the students' rows and
    # columns run opposite to the teacher's: every correlation -1, each relation 1 - (-1) = 2
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    inter, intra = dist_terms(s, s.flip(1), temperature=1.0)
    assert float(inter) == pytest.approx(2.0, rel=1e-7) and float(intra) == pytest.approx(2.0, rel=1e-7)
    same_inter, same_intra = dist_terms(s, s, temperature=1.0)
    assert abs(float(same_inter)) < 1e-7 and abs(float(same_intra)) < 1e-7
    # at T = 2 each centred row and column is (d, -d) with d = sigmoid(1/2) - 1/2: the correlation is
    # -2d^2 / (2d^2 + eps) with the authors' eps 1e-8 on the norms' product, each relation T^2 times 1 minus it
    d2 = 2 * (1 / (1 + math.exp(-0.5)) - 0.5) ** 2
    expected = 4 * (1 + d2 / (d2 + 1e-8))
    inter2, intra2 = dist_terms(s, s.flip(1), temperature=2.0)
    assert float(inter2) == pytest.approx(expected, rel=1e-12) and float(intra2) == pytest.approx(expected, rel=1e-12)


def _numpy_dist(s: np.ndarray, t: np.ndarray, T: float) -> tuple[float, float]:
    def softmax(z):
        e = np.exp(z / T - (z / T).max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def mean_corr(a, b):
        return np.mean([np.corrcoef(a[i], b[i])[0, 1] for i in range(len(a))])

    ys, yt = softmax(s), softmax(t)
    return T * T * (1 - mean_corr(ys, yt)), T * T * (1 - mean_corr(ys.T, yt.T))


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_dist_against_numpy(T):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 5, generator=g, dtype=torch.float64), 3 * torch.randn(8, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    inter, intra = _numpy_dist(s.numpy(), t.numpy(), T)
    total, parts = dist_loss(s, t, y, ce_weight=0.5, kd_weight=2.0, beta=1.5, gamma=3.0, temperature=T)
    assert float(parts["inter"]) == pytest.approx(inter, rel=1e-6)
    assert float(parts["intra"]) == pytest.approx(intra, rel=1e-6)
    ce = float(torch.nn.functional.cross_entropy(s, y))
    assert float(total) == pytest.approx(0.5 * ce + 2.0 * (1.5 * inter + 3.0 * intra), rel=1e-6)
    assert math.isfinite(float(total))


def test_lskd_reads_standardised_logits_and_leaves_ce_on_the_raw_ones():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    z = lambda v: (v - v.mean(1, keepdim=True)) / (v.std(1, keepdim=True) + 1e-7)  # noqa: E731
    _, parts = dist_loss(s, t, y, lskd=True, temperature=2.0)
    inter, intra = _numpy_dist(z(s).numpy(), z(t).numpy(), 2.0)
    assert float(parts["inter"]) == pytest.approx(inter, rel=1e-6)
    assert float(parts["intra"]) == pytest.approx(intra, rel=1e-6)
    assert float(parts["ce"]) == pytest.approx(float(torch.nn.functional.cross_entropy(s, y)), rel=1e-12)


def test_gradients_reach_the_student_never_the_teacher(teachers):
    method, data, split = method_with_teacher(teachers, "dist")
    total, parts = method.loss(train_batch(data, split), 0)
    (parts["inter"] + parts["intra"]).backward(retain_graph=True)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.net.head.parameters())
    assert_gradients_reach_the_student_only(method, total)


@pytest.mark.parametrize("scenario", ["cross-modal", "multi-modal"])
@pytest.mark.parametrize("lskd", [False, True], ids=["orig", "lskd"])
def test_dist_trains_end_to_end_from_a_real_teacher(teachers, scenario, lskd):
    res = distilled_trial(teachers, "dist", scenario, lskd)
    assert all(h["train/inter"] > 0 and h["train/intra"] > 0 for h in res.history)
