"""RKD: distance- and angle-wise losses against closed forms on two triangles and a float64 numpy
recomputation, gradients, and end-to-end training from real teachers in both scenarios."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import method_with_teacher, tiny_spec, train_batch

from cmkd.harness.cli.main import main
from cmkd.harness.engine.trial import run_trial
from cmkd.methods.rkd_losses import pairwise_distances, rkd_angle_loss, rkd_distance_loss, rkd_loss

# a 3-4-5 right triangle (student) and a unit right isosceles triangle (teacher)
STUDENT = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
TEACHER = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)


def test_distance_loss_by_hand():
    # student distances 3, 4, 5 / mean 4; teacher 1, 1, sqrt 2 / mean (2 + sqrt 2) / 3; each pair twice in the
    # 3 x 3 matrix, the diagonal 0; every difference < 1, so Huber = d^2 / 2; mean over 9 entries
    r = 2 + math.sqrt(2)
    expected = 2 / 9 * 0.5 * ((3 / 4 - 3 / r) ** 2 + (4 / 4 - 3 / r) ** 2 + (5 / 4 - 3 * math.sqrt(2) / r) ** 2)
    assert float(rkd_distance_loss(STUDENT, TEACHER)) == pytest.approx(expected, rel=1e-9)
    d = pairwise_distances(STUDENT)
    assert torch.allclose(d, torch.tensor([[0, 3, 4], [3, 0, 5], [4, 5, 0]], dtype=torch.float64))


def test_angle_loss_by_hand():
    # cosines at each vertex: student 0 (right angle), 3/5, 4/5; teacher 0, 1/sqrt 2, 1/sqrt 2. Of the 27
    # (anchor, i, k) triplets only i != k, both != anchor differ (two per vertex); Huber = d^2 / 2
    expected = 2 * 0.5 * ((0.6 - 1 / math.sqrt(2)) ** 2 + (0.8 - 1 / math.sqrt(2)) ** 2) / 27
    assert float(rkd_angle_loss(STUDENT, TEACHER)) == pytest.approx(expected, rel=1e-9)
    # relations ignore scale: a scaled copy of the teacher gives zero loss
    assert float(rkd_distance_loss(7 * TEACHER, TEACHER)) == pytest.approx(0, abs=1e-12)
    assert float(rkd_angle_loss(7 * TEACHER, TEACHER)) == pytest.approx(0, abs=1e-12)


def _huber(x):
    return np.where(np.abs(x) < 1, 0.5 * x ** 2, np.abs(x) - 0.5).mean()


def _numpy_rkd(s, t):
    def dist(e):  # squared distances clamped at eps 1e-12 before the root, as the reference (a coincident pair: 1e-6)
        off = ~np.eye(len(e), dtype=bool)
        d = np.where(off, np.sqrt(np.maximum(((e[:, None] - e[None]) ** 2).sum(-1), 1e-12)), 0.0)
        return d / d[off].mean()

    def cosines(e):
        out = np.zeros((len(e),) * 3)
        for j in range(len(e)):
            for i in range(len(e)):
                for k in range(len(e)):
                    a, b = e[i] - e[j], e[k] - e[j]
                    if np.linalg.norm(a) > 0 and np.linalg.norm(b) > 0:
                        out[j, i, k] = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
        return out

    return _huber(dist(s) - dist(t)), _huber(cosines(s) - cosines(t))


def test_rkd_against_numpy():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 5, generator=g, dtype=torch.float64), 3 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    s[4] = s[1]  # two coincident samples: their difference has no direction (cosine 0, as the reference)
    logits, y = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])
    dist, angle = _numpy_rkd(s.numpy(), t.numpy())
    total, parts = rkd_loss(logits, y, s, t, ce_weight=0.5, distance_weight=25, angle_weight=50)
    assert float(parts["distance"]) == pytest.approx(dist, rel=1e-9)
    assert float(parts["angle"]) == pytest.approx(angle, rel=1e-9)
    ce = float(torch.nn.functional.cross_entropy(logits, y))
    assert float(total) == pytest.approx(0.5 * ce + 25 * dist + 50 * angle, rel=1e-9)


def test_the_gram_form_of_the_cosines_is_the_references_normalise_and_multiply():
    torch.manual_seed(0)
    e = torch.relu(torch.randn(32, 512) * 2 + 1)  # pooled ResNet features are non-negative, far from the origin
    e[7] = e[3]  # coincident samples in float32 too
    diff = torch.nn.functional.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
    reference = torch.bmm(diff, diff.transpose(1, 2)).reshape(-1)
    from cmkd.methods.rkd_losses import triplet_cosines

    torch.testing.assert_close(triplet_cosines(e), reference, atol=2e-6, rtol=0)


def test_gradients_reach_the_student_never_the_teacher(teachers):
    method, data, split = method_with_teacher(teachers, "rkd")
    total, parts = method.loss(train_batch(data, split), 0)
    (parts["distance"] + parts["angle"]).backward(retain_graph=True)
    assert all(p.grad is not None for p in method.net.encoder.parameters())
    assert all(p.grad is None for p in method.net.head.parameters())  # relations live in the embedding
    total.backward()
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
    assert torch.isfinite(torch.stack([p.grad.abs().sum() for p in method.parameters()])).all()


@pytest.mark.parametrize("scenario", ["cross-modal", "multi-modal"])
def test_rkd_trains_end_to_end_from_a_real_teacher(teachers, scenario):
    res = run_trial(tiny_spec(method="rkd", modality="depth", scenario=scenario), runs_root=teachers)
    assert res.epochs_run == 2 and res.variant == "orig" and 0 <= res.outputs["depth"]["test_f1"] <= 1
    assert all(h["train/distance"] > 0 and h["train/angle"] > 0 for h in res.history)


def test_lskd_is_refused_for_rkd(capsys, tmp_path):
    code = main(["train", "--dataset", "synthetic", "--runs", str(tmp_path), "--method", "rkd", "--modality", "depth",
                 "--lskd"])
    assert code == 2 and "--lskd does not apply to method 'rkd'" in capsys.readouterr().err
