"""The ten distilled students (and the authors' MLKD re-write) train end to end from real teachers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import TINY_DATA, method_with_teacher, tiny_spec, train_batch

from cmkd.errors import UserError
from cmkd.harness.cli.main import main
from cmkd.harness.engine.data import data_info, load_data
from cmkd.harness.engine.teachers import find_teacher, teacher_spec
from cmkd.harness.engine.trial import run_trial

KD = ["kdv1", "kdv2", "dkd", "ctkd", "mlkd"]


@pytest.fixture(scope="module")
def store(teachers):
    return teachers  # the session's shared teachers (tests/conftest.py)


@pytest.mark.parametrize("lskd", [False, True], ids=["orig", "lskd"])
@pytest.mark.parametrize("method", KD)
def test_each_student_trains_from_a_real_cross_modal_teacher(store, method, lskd):
    spec = tiny_spec(method=method, modality="depth", scenario="cross-modal", method_options={"lskd": lskd})
    res = run_trial(spec, runs_root=store)
    assert res.variant == ("lskd" if lskd else "orig")
    assert res.epochs_run == 2 and 0.0 <= res.outputs["depth"]["test_f1"] <= 1.0
    assert all(torch.isfinite(torch.tensor(h["train/loss"])) for h in res.history)
    assert Path(res.teacher).name.startswith("seed0-") and "student-rgb" in res.teacher


@pytest.mark.parametrize("method", ["kdv2", "mlkd", "mlkd-discomkd-code"])
def test_students_of_the_multi_modal_teacher(store, method):
    res = run_trial(tiny_spec(method=method, modality="rgb", scenario="multi-modal", method_options={"lskd": True}),
                    runs_root=store)
    assert "teacher-mm" in res.teacher and set(res.outputs) == {"rgb"}


def _method(store, name, scenario="cross-modal", modality="depth", **opts):
    method, data, split = method_with_teacher(store, name, scenario, modality, **opts)
    return method, (data, split)


def _batch(data_split, n=16):
    return train_batch(*data_split, n)


def test_gradients_reach_the_student_not_the_teacher(store):
    method, data = _method(store, "kdv2")
    before = {k: v.clone() for k, v in method.teacher.state_dict().items()}
    total, _ = method.loss(_batch(data), 0)
    total.backward()
    assert all(p.grad is not None for p in method.net.parameters())
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
    assert not method.teacher.training
    for k, v in method.teacher.state_dict().items():  # eval mode: BatchNorm running stats untouched
        assert torch.equal(v, before[k]), k


def test_teacher_train_mode_quirk_updates_batchnorm_statistics(store):
    method, data = _method(store, "kdv1", teacher_train_mode=True)
    before = method.teacher.encoder.bn1.running_mean.clone()
    method.loss(_batch(data), 0)
    assert not torch.equal(before, method.teacher.encoder.bn1.running_mean)


def test_dkd_is_zero_weighted_in_its_first_epoch(store):
    method, data = _method(store, "dkd")
    b = _batch(data)
    with torch.no_grad():
        total0, parts0 = method.loss(b, 0)
        total5, parts5 = method.loss(b, 5)
    assert float(total0) == pytest.approx(float(parts0["ce"]))
    assert float(parts5["dkd"]) == pytest.approx(5 / 20 * (float(parts5["tckd"]) + 8 * float(parts5["nckd"])), rel=1e-5)
    assert float(total5) > float(total0)


def test_ctkd_temperature_moves_against_the_kd_loss_with_the_curriculum(store):
    method, data = _method(store, "ctkd", temp_lr=0.1)
    b = _batch(data)
    method.on_epoch_start(1, 10)  # second epoch, 0-based as the DisCoM-KD authors: lambda = 1/2 (1 - cos(pi/5))
    lam = method.lam
    assert 0 < lam < 1
    total, parts = method.loss(b, 0)
    total.backward()
    # the same loss without reversal: d total / d theta
    theta = method.theta.detach().clone().requires_grad_(True)
    from cmkd.methods.kd_losses import kd_loss

    s = method.net(b.x["depth"]).detach()
    t = method.teacher(b.x["rgb"]).detach()
    plain = 0.9 * kd_loss(s, t, 1 + 20 * torch.sigmoid(theta))
    (g,) = torch.autograd.grad(plain, theta)
    assert method.theta.grad.item() == pytest.approx(-lam * g.item(), rel=1e-4)
    # an optimiser step moves theta so as to *increase* the KD loss (adversarial), scaled by lambda
    opt = torch.optim.SGD([method.theta], lr=1.0)
    theta0 = method.theta.item()
    opt.step()
    assert (method.theta.item() - theta0) * g.item() > 0
    method.on_epoch_start(20, 30)
    assert method.lam == 1.0


def test_missing_teacher_names_the_command(tmp_path):
    with pytest.raises(UserError, match="cmkd train --method student .* --modality rgb"):
        run_trial(tiny_spec(method="kdv1", modality="depth", scenario="cross-modal"), runs_root=tmp_path)
    with pytest.raises(UserError, match="cmkd train --method teacher-mm"):
        run_trial(tiny_spec(method="dkd", modality="depth", scenario="multi-modal"), runs_root=tmp_path)


@pytest.mark.parametrize("field, value, message", [("split_fingerprint", "0000", "another split"),
                                                   ("n_classes", 5, "other data")])
def test_teacher_with_another_split_or_classes_is_refused(store, tmp_path, field, value, message):
    import shutil

    data = load_data("synthetic", None, TINY_DATA)
    tspec = teacher_spec(tiny_spec(method="kdv1", modality="depth", data_fingerprint=data.fingerprint()), "cross-modal",
                         data_info(data))
    src = find_teacher(tspec, "cross-modal", data_info(data), store)
    root = tmp_path / "store"
    shutil.copytree(src, root / src.relative_to(store))
    result = json.loads((root / src.relative_to(store) / "result.json").read_text())
    result[field] = value
    (root / src.relative_to(store) / "result.json").write_text(json.dumps(result))
    with pytest.raises(UserError, match=message):
        run_trial(tiny_spec(method="kdv1", modality="depth", scenario="cross-modal"), runs_root=root)


@pytest.mark.parametrize("extra, message", [
    (["--method", "kdv3", "--modality", "depth"], "unknown method 'kdv3'"),
    (["--method", "kdv1", "--modality", "depth", "--opt", "temperature=0"], "temperature must lie in"),
    (["--method", "kdv2", "--modality", "depth", "--opt", "alpha=1.5"], "option alpha must lie in [0, 1], got 1.5"),
    (["--method", "dkd", "--modality", "depth", "--opt", "beta=-1"], "beta must be >= 0"),
    (["--method", "dkd", "--modality", "depth", "--opt", "gamma=1"], "has no option 'gamma'"),
    (["--method", "kdv1", "--modality", "rgb"], "cannot train on 'rgb' itself"),
    (["--method", "kdv1", "--modality", "depth", "--scenario", "ablation"], "pass --scenario cross-modal or multi-modal"),
    (["--method", "student", "--modality", "depth", "--scenario", "cross-modal"], "has no teacher"),
])
def test_kd_bad_input(capsys, tmp_path, extra, message):
    code = main(["train", "--dataset", "synthetic", "--runs", str(tmp_path), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_ctkd_lskd_inverted_standardises_exactly_when_lskd_is_off(store):
    """LSKD's CTKD/train_student.py line 314 picks DistillKL_logit_stand when --logit_stand is *off*: the
    switch reproduces that, so its plain run equals ours with LSKD and its LSKD run equals our plain one."""
    from cmkd.methods.kd_losses import kd_loss, standardize

    b = None
    kd = {}
    for lskd in (False, True):
        for inverted in (False, True):
            torch.manual_seed(0)
            method, data = _method(store, "ctkd", lskd=lskd, lskd_inverted=inverted)
            b = b or _batch(data)
            with torch.no_grad():
                _, parts = method.loss(b, 0)
                s, t = method.net(b.x["depth"]), method.teacher(b.x["rgb"])
            kd[lskd, inverted] = float(parts["kd"])
            z = lskd != inverted
            T = method.temperature().detach()
            expected = kd_loss(standardize(s), standardize(t), T) if z else kd_loss(s, t, T)
            assert kd[lskd, inverted] == pytest.approx(float(expected), rel=1e-5)
    assert kd[False, True] == pytest.approx(kd[True, False], rel=1e-6)
    assert kd[True, True] == pytest.approx(kd[False, False], rel=1e-6)
    assert kd[False, False] != pytest.approx(kd[True, False], rel=1e-3)
