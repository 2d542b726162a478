"""CRD: the NCE loss, the scores and the bank update against hand-computed values and float64 numpy;
negatives from other classes only; the bank sized to the training split; gradients; end-to-end training
from real teachers in both scenarios."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import method_with_teacher, tiny_spec, train_batch

from cmkd.harness.cli.main import main
from cmkd.harness.engine.trial import run_trial
from cmkd.methods.crd_losses import contrast_scores, momentum_update, nce_loss, negatives_per_sample, sample_negatives


def test_nce_loss_by_hand():
    # one sample, one negative, a bank of 4: noise K * Pn = 1/4; h(pos) = 0.5 / 0.75, 1 - h(neg) = 0.25 / 0.5
    scores = torch.tensor([[0.5, 0.25]], dtype=torch.float64)
    assert float(nce_loss(scores, 4)) == pytest.approx(-(math.log(2 / 3) + math.log(1 / 2)), abs=1e-6)  # = log 3


def test_scores_and_bank_update_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
    v = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    scores = contrast_scores(bank, v, torch.tensor([[1, 0, 2]]), temperature=0.5)
    assert scores[0].tolist() == pytest.approx([math.exp(2.0), 1.0, math.exp(1.6)])
    new = momentum_update(bank[:1], v, momentum=0.5)  # (0.5, 0.5) renormalised
    assert new[0].tolist() == pytest.approx([1 / math.sqrt(2), 1 / math.sqrt(2)])


def test_nce_on_scores_against_numpy():
    g = torch.Generator().manual_seed(0)
    n, b, k, dim, temp = 50, 4, 7, 8, 0.07
    bank = torch.nn.functional.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1)
    v = torch.nn.functional.normalize(torch.randn(b, dim, generator=g, dtype=torch.float64), dim=1)
    idx = torch.randint(0, n, (b, k + 1), generator=g)
    scores = contrast_scores(bank, v, idx, temp)
    z = float(scores.mean()) * n
    got = float(nce_loss(scores / z, n))
    s = np.exp(np.einsum("bkd,bd->bk", bank.numpy()[idx.numpy()], v.numpy()) / temp) / z
    pn = 1 / n
    expected = -(np.log(s[:, 0] / (s[:, 0] + k * pn + 1e-7)).sum() + np.log(k * pn / (s[:, 1:] + k * pn + 1e-7)).sum()) / b
    assert got == pytest.approx(expected, rel=1e-10)


def test_the_dense_and_the_gathered_scores_are_the_same_numbers():
    g = torch.Generator().manual_seed(3)
    bank = torch.nn.functional.normalize(torch.randn(400, 16, generator=g, dtype=torch.float64), dim=1)
    v = torch.nn.functional.normalize(torch.randn(5, 16, generator=g, dtype=torch.float64), dim=1)
    few, many = torch.randint(0, 400, (5, 10), generator=g), torch.randint(0, 400, (5, 300), generator=g)
    for idx in (few, many):  # 10 of 400 rows: gathered; 300 of 400: one product with the whole bank
        expected = np.exp(np.einsum("bkd,bd->bk", bank.numpy()[idx.numpy()], v.numpy()) / 0.07)
        np.testing.assert_allclose(contrast_scores(bank, v, idx, 0.07).numpy(), expected, rtol=1e-12)


def test_negatives_are_other_class_samples_without_replacement_and_sized_to_the_data():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    assert negatives_per_sample(labels, 16384) == 6  # the smallest pool: 10 - 4 samples of class 2
    assert negatives_per_sample(labels, 3) == 3
    torch.manual_seed(0)
    targets = labels[[0, 3, 5]]
    neg = sample_negatives(labels, targets, 6)
    assert neg.shape == (3, 6)
    for row, c in zip(neg, targets):
        assert (labels[row] != c).all() and len(set(row.tolist())) == 6
    with pytest.raises(ValueError, match="two classes"):
        negatives_per_sample(torch.zeros(5, dtype=torch.long), 10)


def test_bank_updates_the_batch_rows_only_and_z_is_fixed_at_the_first_step(teachers):
    method, data, split = method_with_teacher(teachers, "crd")
    assert method.bank_student.shape == (len(split.train), 128) and method.bank_labels.tolist() == data.labels[split.train].tolist()
    assert method.k == len(split.train) - int(np.bincount(data.labels[split.train]).max())  # tiny data: pool < 16384
    b = train_batch(data, split, n=8, start=4)
    before = method.bank_student.clone()
    total, parts = method.loss(b, 0)
    changed = (method.bank_student != before).any(1).nonzero().flatten().tolist()
    assert changed == list(range(4, 12))
    assert torch.allclose(method.bank_student[4:12].norm(dim=1), torch.ones(8, dtype=method.bank_student.dtype))
    z = method.z.clone()
    assert (z > 0).all()
    method.loss(train_batch(data, split, n=8, start=20), 0)
    assert torch.equal(method.z, z)
    total.backward()
    assert all(p.grad is not None for p in [*method.net.parameters(), *method.embed_student.parameters(),
                                            *method.embed_teacher.parameters()])
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
    assert not method.bank_student.requires_grad and float(parts["crd"]) > 0


@pytest.mark.parametrize("scenario", ["cross-modal", "multi-modal"])
def test_crd_trains_end_to_end_from_a_real_teacher_and_resumes_its_bank(teachers, scenario, tmp_path):
    spec = tiny_spec(method="crd", modality="depth", scenario=scenario)
    res = run_trial(spec, runs_root=teachers, out_dir=tmp_path / "t")
    assert res.epochs_run == 2 and res.variant == "orig" and 0 <= res.outputs["depth"]["test_f1"] <= 1
    assert all(np.isfinite(h["train/crd"]) for h in res.history)
    best = torch.load(tmp_path / "t" / "best_depth.pt", weights_only=True)
    assert not any(k.startswith(("bank", "embed", "z")) for k in best)  # the deployed student alone


def test_crd_checkpoint_holds_the_bank(teachers, tmp_path):
    class Stop(Exception):
        pass

    def stop(report):
        raise Stop

    spec = tiny_spec(method="crd", modality="depth", scenario="cross-modal")
    with pytest.raises(Stop):
        run_trial(spec, runs_root=teachers, out_dir=tmp_path / "t", on_epoch=stop)
    ckpt = torch.load(tmp_path / "t" / "checkpoint.pt", weights_only=True)
    assert {"bank_student", "bank_teacher", "bank_labels", "z"} <= set(ckpt["method"]) and (ckpt["method"]["z"] > 0).all()
    res = run_trial(spec, runs_root=teachers, out_dir=tmp_path / "t")
    assert res.resumed_from == [1] and res.epochs_run == 2


def test_lskd_is_refused_for_crd(capsys, tmp_path):
    code = main(["train", "--dataset", "synthetic", "--runs", str(tmp_path), "--method", "crd", "--modality", "depth",
                 "--lskd"])
    assert code == 2 and "--lskd does not apply to method 'crd'" in capsys.readouterr().err


@pytest.mark.parametrize("opt, message", [("nce_k=0", "option nce_k must be >= 1, got 0"),
                                          ("momentum=1", "option momentum must lie in [0, 1), got 1"),
                                          ("nce_t=0", "option nce_t must be > 0")])
def test_crd_bad_options_are_refused_before_training(capsys, tmp_path, opt, message):
    code = main(["train", "--dataset", "synthetic", "--runs", str(tmp_path), "--method", "crd", "--modality", "depth",
                 "--opt", opt])
    err = capsys.readouterr().err
    assert code == 2 and message in err and not list(tmp_path.iterdir())
