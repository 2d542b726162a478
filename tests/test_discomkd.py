"""DisCoM-KD: loss terms by hand, the reversed gradient, ablations, export, M = 3."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import TINY_DATA, tiny_spec

from cmkd.errors import UserError
from cmkd.harness.cli.main import main
from cmkd.harness.engine.data import data_info, load_data
from cmkd.harness.engine.trial import run_trial
from cmkd.methods import Batch, DataInfo, get_method
from cmkd.methods import discomkd_losses as DL
from cmkd.methods.discomkd import ABLATIONS, DisCoMKD, DisCoMKDOptions
from cmkd.methods.kd_losses import grad_reverse


def ce_by_hand(logits, label):
    logits = np.asarray(logits, float)
    return -(logits[label] - math.log(np.exp(logits).sum()))


# ---- each term by hand on tiny tensors ---------------------------------------------------------
def test_classification_and_auxiliary_terms():
    a = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 3.0]])
    y = {"rgb": torch.tensor([0, 2]), "depth": torch.tensor([1, 2])}
    expected = np.mean([ce_by_hand(a[0], 0), ce_by_hand(a[1], 2)]) + np.mean([ce_by_hand(b[0], 1), ce_by_hand(b[1], 2)])
    assert float(DL.classification_loss({"rgb": a, "depth": b}, y)) == pytest.approx(expected, rel=1e-6)
    aux = DL.auxiliary_loss({"rgb": a, "depth": b}, {"rgb": b, "depth": a}, y)
    expected_aux = expected + np.mean([ce_by_hand(b[0], 0), ce_by_hand(b[1], 2)]) + np.mean([ce_by_hand(a[0], 1), ce_by_hand(a[1], 2)])
    assert float(aux) == pytest.approx(expected_aux, rel=1e-6)


def test_modality_targets_paper_and_official():
    logits = torch.tensor([[1.0, -1.0], [0.0, 2.0]])
    # paper: integer modality labels
    assert float(DL.modality_ce(logits, 0)) == pytest.approx(np.mean([ce_by_hand([1, -1], 0), ce_by_hand([0, 2], 0)]))
    assert float(DL.modality_ce(logits, 1)) == pytest.approx(np.mean([ce_by_hand([1, -1], 1), ce_by_hand([0, 2], 1)]))
    # released code: ones_like targets for the first modality, -(log p0 + log p1); zeros_like: 0
    lp = F.log_softmax(logits, 1).numpy()
    assert float(DL.modality_ce(logits, 0, "official")) == pytest.approx(float(-(lp.sum(1)).mean()), rel=1e-6)
    assert float(DL.modality_ce(logits, 1, "official")) == 0.0
    two = DL.modality_loss({"a": logits, "b": logits}, {"a": logits, "b": logits})
    assert float(two) == pytest.approx(2 * (float(DL.modality_ce(logits, 0)) + float(DL.modality_ce(logits, 1))))


def test_orthogonality_signed_and_absolute():
    z_inv = {"m": torch.tensor([[1.0, 0.0], [1.0, 1.0]])}
    z_inf = {"m": torch.tensor([[0.0, 1.0], [-1.0, 0.0]])}
    z_irr = {"m": torch.tensor([[0.0, -2.0], [1.0, 0.0]])}
    # cos(inv, inf) = [0, -1/sqrt2]; cos(inf, irr) = [-1, -1]
    signed = np.mean([0, -1 / math.sqrt(2)]) + np.mean([-1, -1])
    absolute = np.mean([0, 1 / math.sqrt(2)]) + np.mean([1, 1])
    assert float(DL.orthogonality_loss(z_inv, z_inf, z_irr)) == pytest.approx(signed, rel=1e-6)
    assert float(DL.orthogonality_loss(z_inv, z_inf, z_irr, "absolute")) == pytest.approx(absolute, rel=1e-6)


def test_adversarial_term_and_the_grl_reversed_gradient():
    disc = torch.nn.Linear(2, 2)
    z = torch.tensor([[0.3, -0.2], [1.0, 0.5]], requires_grad=True)
    z2 = z.detach().clone().requires_grad_(True)
    rev = DL.adversarial_loss({"a": disc(grad_reverse(z, 0.7)), "b": disc(grad_reverse(z, 0.7))})
    plain = DL.adversarial_loss({"a": disc(z2), "b": disc(z2)})
    assert float(rev) == pytest.approx(float(plain))  # identity forward
    logits = disc(z).detach()
    by_hand = np.mean([ce_by_hand(r, 0) for r in logits]) + np.mean([ce_by_hand(r, 1) for r in logits])
    assert float(rev) == pytest.approx(by_hand, rel=1e-6)
    rev.backward()
    plain.backward()
    torch.testing.assert_close(z.grad, -0.7 * z2.grad)


# ---- the method ---------------------------------------------------------------------------------
def _method(**opts):
    data = load_data("synthetic", None, TINY_DATA)
    torch.manual_seed(0)
    return DisCoMKD(data_info(data), None, DisCoMKDOptions(**opts)), data


def _batch(data, n=8):
    return Batch(x={m: torch.from_numpy(a[:n]) for m, a in data.modalities.items()}, y=torch.from_numpy(data.labels[:n]))


def test_encoders_receive_the_reversed_adversarial_gradient():
    method, data = _method()
    b = _batch(data)
    inv_params = [p for m in method.mods for p in method.branches[m].invariant.parameters()]
    _, terms = method.loss(b, 0)
    g_method = torch.autograd.grad(terms["adv"], inv_params + list(method.discriminator.parameters()))
    # the same term without the reversal, from the same modules
    z = {m: method.branches[m].features(b.x[m])[0] for m in method.mods}
    plain = DL.adversarial_loss({m: method.discriminator(z[m]) for m in method.mods})
    g_plain = torch.autograd.grad(plain, inv_params + list(method.discriminator.parameters()))
    n_inv = len(inv_params)
    for gm, gp in zip(g_method[:n_inv], g_plain[:n_inv]):
        torch.testing.assert_close(gm, -gp, rtol=1e-4, atol=1e-6)  # encoders: reversed
    for gm, gp in zip(g_method[n_inv:], g_plain[n_inv:]):
        torch.testing.assert_close(gm, gp, rtol=1e-4, atol=1e-6)  # discriminator: as is


@pytest.mark.parametrize("ablation", ["", *ABLATIONS])
def test_ablation_removes_its_term_from_the_total(ablation):
    method, data = _method(ablation=ablation)
    total, terms = method.loss(_batch(data), 0)
    removed = {"no-adv": "adv", "no-mod": "mod", "no-aux": "aux", "no-orth": "perp"}.get(ablation)
    assert set(terms) == {"cl", "adv", "mod", "aux", "perp"} - {removed}
    assert float(total) == pytest.approx(float(sum(terms.values())))
    width = {"only-inv": 256, "only-inf": 256}.get(ablation, 512)
    assert method.branches["rgb"].head.in_features == width


def test_joint_run_reports_every_modality_and_exports_match_the_joint_model(tmp_path):
    res = run_trial(tiny_spec(method="discomkd", modality=None), runs_root=tmp_path)
    assert set(res.outputs) == {"rgb", "depth"}
    data = load_data("synthetic", None, TINY_DATA)
    split = np.load(Path(res.out_dir) / "split.npz")
    for m in ("rgb", "depth"):
        method, _ = _method()
        method.export(m).load_state_dict(torch.load(Path(res.out_dir) / f"best_{m}.pt", weights_only=True))
        method.eval()
        x = torch.from_numpy(data.modalities[m][split["test"]])
        with torch.no_grad():
            joint = method.predict({k: torch.from_numpy(data.modalities[k][split["test"]]) for k in method.mods})[m]
            exported = torch.export.load(res.exports[m]).module()(x)
        torch.testing.assert_close(exported, joint, rtol=1e-5, atol=1e-5)
        assert torch.equal(exported.argmax(1), joint.argmax(1))
        # the exported file alone reproduces the reported test F1
        from sklearn.metrics import f1_score

        f1 = f1_score(data.labels[split["test"]], exported.argmax(1).numpy(), average="weighted")
        assert f1 == pytest.approx(res.outputs[m]["test_f1"])


def test_predict_cli_prints_the_exported_predictions(tmp_path, capsys):
    res = run_trial(tiny_spec(method="discomkd", modality=None, epochs=1), runs_root=tmp_path)
    data = load_data("synthetic", None, TINY_DATA)
    np.save(tmp_path / "x.npy", data.modalities["depth"][:6])
    assert main(["predict", "--model", res.exports["depth"], "--input", str(tmp_path / "x.npy")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split("\t") == ["input", "prediction", "class_name"]
    printed = [int(line.split("\t")[1]) for line in lines[1:]]
    with torch.no_grad():
        expected = torch.export.load(res.exports["depth"]).module()(torch.from_numpy(data.modalities["depth"][:6])).argmax(1)
    assert printed == expected.tolist()
    np.save(tmp_path / "bad.npy", data.modalities["rgb"][:2])
    assert main(["predict", "--model", res.exports["depth"], "--input", str(tmp_path / "bad.npy")]) == 2
    assert "reads 1 channel(s) of depth" in capsys.readouterr().err


def test_three_modalities_train_end_to_end(tmp_path):
    res = run_trial(tiny_spec(method="discomkd", modality=None, epochs=1, dataset_options={"n_modalities": 3},
                              method_options={"batches": "paired", "modality_targets": "official"}), runs_root=tmp_path)
    assert set(res.outputs) == {"rgb", "depth", "thermal"}
    method, _ = _method()
    assert method.discriminator.out_features == 2
    info3 = data_info(load_data("synthetic", None, {**TINY_DATA, "n_modalities": 3}))
    assert DisCoMKD(info3, None, DisCoMKDOptions()).discriminator.out_features == 3


def test_bad_input():
    with pytest.raises(UserError, match="option ablation must be one of '', no-adv.*got 'no-advv' \\(did you mean 'no-adv'"):
        DisCoMKDOptions(ablation="no-advv")
    with pytest.raises(UserError, match="perp must be one of"):
        DisCoMKDOptions(perp="cosine")
    one = DataInfo("one", {"rgb": 3}, {"rgb": (16, 16)}, 4, "rgb")
    with pytest.raises(UserError, match="at least two modalities"):
        get_method("discomkd").check(one, None, DisCoMKDOptions())


def test_cli_ablation_errors(capsys, tmp_path):
    assert main(["train", "--method", "discomkd", "--dataset", "synthetic", "--ablation", "no-perp",
                 "--runs", str(tmp_path)]) == 2
    assert "option ablation must be one of" in capsys.readouterr().err
    assert main(["train", "--method", "discomkd", "--dataset", "synthetic", "--modality", "rgb",
                 "--runs", str(tmp_path)]) == 2
    assert "drop --modality" in capsys.readouterr().err
