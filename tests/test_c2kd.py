"""C2KD: Kendall's tau against scipy, the non-target term by hand, the whole loss against a float64
numpy recomputation of the authors' terms, what trains (student, proxies, the teacher's copy; never the
loaded teacher), and end-to-end training from real teachers in both scenarios, with and without LSKD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import method_with_teacher, tiny_spec, train_batch
from scipy.stats import kendalltau

from cmkd.harness.engine.trial import run_trial
from cmkd.methods.c2kd_losses import c2kd_loss, kendall_tau, non_target, non_target_kl


def test_kendall_tau_is_scipys_tau_b_with_and_without_ties():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    ties_a, ties_b = torch.randint(0, 3, (5, 7), generator=g).float(), torch.randint(0, 3, (5, 7), generator=g).float()
    for x, y in ((a, b), (ties_a, ties_b), (a, a), (a, -a)):
        expected = [kendalltau(x[i].numpy(), y[i].numpy())[0] for i in range(len(x))]
        assert kendall_tau(x, y).tolist() == pytest.approx(expected, abs=1e-6)


def test_non_target_logits_zeroed_as_the_code_or_removed_as_the_paper():
    logits, target = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([1])
    assert non_target(logits, target, "zeroed").tolist() == [[1.0, 0.0, 3.0]]
    assert non_target(logits, target, "removed").tolist() == [[1.0, 3.0]]


def test_non_target_kl_by_hand():
    # removed: teacher [log 3, 0] -> (3/4, 1/4), student [0, 0] -> (1/2, 1/2); the second sample masked out
    student = torch.zeros(2, 3, dtype=torch.float64)
    teacher = torch.tensor([[math.log(3), 0.0, 5.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
    got = non_target_kl(student, teacher, torch.tensor([2, 0]), torch.tensor([1.0, 0.0], dtype=torch.float64), "removed")
    assert float(got) == pytest.approx((0.75 * math.log(1.5) + 0.25 * math.log(0.5)) / 2, rel=1e-12)


def _log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def _kl(student, teacher):  # KL(softmax(teacher) || softmax(student)) per row
    lt, ls = _log_softmax(teacher), _log_softmax(student)
    return (np.exp(lt) * (lt - ls)).sum(1)


def _numpy_c2kd(s, t, sp, tp, y, krc):
    b = len(y)
    mask = np.array([kendalltau(tp[i], sp[i])[0] > krc for i in range(b)], dtype=float)
    gt = np.eye(s.shape[1], dtype=bool)[y]
    nt = lambda z: np.where(gt, 0.0, z)  # noqa: E731  the authors' logits * ~gt_mask
    ce = lambda z: -_log_softmax(z)[np.arange(b), y].mean()  # noqa: E731
    self_t = _kl(tp, t).mean() + _kl(t, tp).mean()
    self_s = _kl(sp, s).mean() + _kl(s, sp).mean()
    cross = (mask * _kl(nt(sp), nt(tp))).mean() + (mask * _kl(nt(tp), nt(sp))).mean()
    return ce(t) + ce(s) + self_t + self_s + cross, mask


@pytest.mark.parametrize("krc", [-1.0, 0.0, 0.3])
def test_c2kd_loss_against_numpy(krc):
    g = torch.Generator().manual_seed(1)
    s, t, sp, tp = (torch.randn(6, 5, generator=g, dtype=torch.float64) for _ in range(4))
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    total, parts = c2kd_loss(s, t, sp, tp, y, krc)
    expected, mask = _numpy_c2kd(*(v.numpy() for v in (s, t, sp, tp)), y.numpy(), krc)
    assert float(total) == pytest.approx(expected, rel=1e-10)
    assert float(parts["selected"]) == pytest.approx(mask.mean())
    if krc == -1.0:
        assert mask.mean() > 0.5


def test_no_selected_sample_means_no_cross_modal_term():
    g = torch.Generator().manual_seed(2)
    s, t, sp, tp = (torch.randn(4, 5, generator=g) for _ in range(4))
    _, parts = c2kd_loss(s, t, sp, tp, torch.tensor([0, 1, 2, 3]), krc=1.0)  # tau > 1 never holds
    assert float(parts["kd_to_student"]) == 0 and float(parts["kd_to_teacher"]) == 0 and float(parts["selected"]) == 0


def test_student_proxies_and_the_teachers_copy_train_the_loaded_teacher_never(teachers):
    method, data, split = method_with_teacher(teachers, "c2kd")
    loaded = {k: v.clone() for k, v in method.teacher.state_dict().items()}
    total, parts = method.loss(train_batch(data, split), 0)
    parts["kd_to_student"].backward(retain_graph=True)  # the teacher's knowledge reaches the student's side only
    assert all(p.grad is not None for p in method.student_proxy.parameters())
    assert all(p.grad is not None for p in method.net.encoder.layer3.parameters())
    assert all(p.grad is None for p in [*method.teacher_net.parameters(), *method.teacher_proxy.parameters()])
    total.backward()
    opt = torch.optim.SGD(method.parameters(), lr=0.1)
    copy_before = {k: v.clone() for k, v in method.teacher_net.state_dict().items()}
    opt.step()
    assert any(not torch.equal(v, copy_before[k]) for k, v in method.teacher_net.state_dict().items())
    assert all(torch.equal(v, loaded[k]) for k, v in method.teacher.state_dict().items())
    assert all(not p.requires_grad for p in method.teacher.parameters())
    assert set(method.export("depth").state_dict()) == set(method.net.state_dict())


def test_a_frozen_teacher_variant_trains_only_the_teachers_proxy(teachers):
    method, data, split = method_with_teacher(teachers, "c2kd", train_teacher=False)
    assert not hasattr(method, "teacher_net")
    total, _ = method.loss(train_batch(data, split), 0)
    total.backward()
    assert all(p.grad is not None for p in method.teacher_proxy.parameters())
    assert all(p.grad is None for p in method.teacher.parameters()) and not method.teacher.training


@pytest.mark.parametrize("scenario, lskd", [("cross-modal", False), ("multi-modal", False), ("cross-modal", True)])
def test_c2kd_trains_end_to_end_from_a_real_teacher(teachers, scenario, lskd):
    res = run_trial(tiny_spec(method="c2kd", modality="depth", scenario=scenario, method_options={"lskd": lskd}),
                    runs_root=teachers)
    assert res.epochs_run == 2 and res.variant == ("lskd" if lskd else "orig")
    assert 0 <= res.outputs["depth"]["test_f1"] <= 1
    assert all(0 <= h["train/selected"] <= 1 and np.isfinite(h["train/loss"]) for h in res.history)


@pytest.mark.parametrize("opt, message", [("non_target=drop", "option non_target must be one of zeroed, removed"),
                                          ("krc=1.5", "option krc must lie in [-1, 1], got 1.5"),
                                          ("proxy_stage=pool", "option proxy_stage must be one of stage1")])
def test_c2kd_bad_options_are_refused_before_training(capsys, tmp_path, opt, message):
    from cmkd.harness.cli.main import main

    code = main(["train", "--dataset", "synthetic", "--runs", str(tmp_path), "--method", "c2kd", "--modality", "depth",
                 "--opt", opt])
    err = capsys.readouterr().err
    assert code == 2 and message in err and not list(tmp_path.iterdir())
