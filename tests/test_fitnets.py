"""FitNets: the hint loss against hand-computed values and a float64 numpy recomputation, the regressor
for each shape pair, gradients, and end-to-end training from real teachers in both scenarios."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import method_with_teacher, tiny_spec, train_batch

from cmkd.errors import UserError
from cmkd.harness.cli.main import main
from cmkd.harness.engine.trial import run_trial
from cmkd.methods.fitnets import conv_regressor
from cmkd.methods.fitnets_losses import fitnets_loss, hint_loss

S = torch.tensor([[1.0, 2.0, 0.5], [0.2, -1.0, 1.5]], dtype=torch.float64)  # kd-methods.md V1's logits
Y = torch.tensor([1, 2])


def test_hint_loss_by_hand():
    student = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)
    teacher = torch.tensor([[[[0.0, 2.0], [3.0, 6.0]]]], dtype=torch.float64)
    assert float(hint_loss(student, teacher)) == pytest.approx((1 + 0 + 0 + 4) / 4)
    total, parts = fitnets_loss(S, Y, student, teacher, ce_weight=1.0, hint_weight=100.0)
    assert float(parts["ce"]) == pytest.approx(0.383944, abs=1e-6)  # V1's CE
    assert float(total) == pytest.approx(0.383944 + 100 * 1.25, abs=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        hint_loss(student, teacher[..., :1])


def test_fitnets_loss_against_numpy():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.tensor([0, 3, 1, 1, 2])
    s, t = torch.randn(5, 8, 3, 3, generator=g, dtype=torch.float64), torch.randn(5, 8, 3, 3, generator=g, dtype=torch.float64)
    total, _ = fitnets_loss(logits, target, s, t, ce_weight=0.7, hint_weight=3.0)
    z = logits.numpy()
    log_p = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    ce = -log_p[np.arange(5), target.numpy()].mean()
    assert float(total) == pytest.approx(0.7 * ce + 3.0 * ((s.numpy() - t.numpy()) ** 2).mean(), rel=1e-12)


@pytest.mark.parametrize("student, teacher, kind", [((128, 4, 4), (128, 4, 4), "1x1"), ((64, 8, 8), (128, 4, 4), "stride2"),
                                                    ((128, 2, 2), (256, 4, 4), "transposed"),
                                                    ((128, 5, 5), (128, 4, 4), "2x2")])
def test_the_regressor_maps_the_student_map_onto_the_teachers(student, teacher, kind):
    reg = conv_regressor(student, teacher)
    assert isinstance(reg[0], torch.nn.ConvTranspose2d) == (kind == "transposed")
    assert reg(torch.randn(2, *student)).shape == (2, *teacher)


def test_a_map_that_no_regressor_aligns_is_refused():
    with pytest.raises(UserError, match="no regressor maps a student map of 2x2 onto a teacher map of 5x5"):
        conv_regressor((128, 2, 2), (128, 5, 5))


def test_gradients_reach_the_student_and_regressor_never_the_teacher(teachers):
    method, data, split = method_with_teacher(teachers, "fitnets", stage="layer3")
    before = {k: v.clone() for k, v in method.teacher.state_dict().items()}
    total, parts = method.loss(train_batch(data, split), 0)
    parts["hint"].backward(retain_graph=True)  # the hint alone: up to layer3 and the regressor, not above
    assert float(parts["hint"]) > 0
    assert all(p.grad is not None for p in [*method.net.encoder.layer3.parameters(), *method.regressor.parameters()])
    assert all(p.grad is None for p in [*method.net.encoder.layer4.parameters(), *method.net.head.parameters()])
    total.backward()
    assert all(p.grad is not None for p in method.parameters())
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
    assert all(torch.equal(v, before[k]) for k, v in method.teacher.state_dict().items())
    assert set(method.export("depth").state_dict()) == set(method.net.state_dict())  # no regressor deployed


def test_the_multi_modal_hint_target_is_the_fused_map(teachers):
    method, data, split = method_with_teacher(teachers, "fitnets", scenario="multi-modal")
    b = train_batch(data, split)
    _, feats = method.teacher_features(b.x)
    with torch.no_grad():
        from cmkd.archs import forward_stages as encoder_stages

        parts = [encoder_stages(method.teacher.encoders[m], b.x[m], ("stage2",))[1]["stage2"] for m in ("rgb", "depth")]
    torch.testing.assert_close(feats["stage2"], parts[0] + parts[1])


@pytest.mark.parametrize("scenario", ["cross-modal", "multi-modal"])
def test_fitnets_trains_end_to_end_from_a_real_teacher(teachers, scenario):
    res = run_trial(tiny_spec(method="fitnets", modality="depth", scenario=scenario), runs_root=teachers)
    assert res.epochs_run == 2 and res.variant == "orig" and 0 <= res.outputs["depth"]["test_f1"] <= 1
    assert all(np.isfinite(h["train/hint"]) and h["train/hint"] > 0 for h in res.history)


def test_lskd_is_refused_for_fitnets(capsys, tmp_path):
    code = main(["train", "--dataset", "synthetic", "--runs", str(tmp_path), "--method", "fitnets", "--modality", "depth",
                 "--lskd"])
    err = capsys.readouterr().err
    assert code == 2 and "--lskd does not apply to method 'fitnets'" in err
