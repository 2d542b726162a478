"""MGDFR: the vectorised permutation salience against the authors' channel-by-channel procedure and a
closed form, the channel mask and freezing, the co-training loss, the three stages in one trial (which
networks each trains), the salience pass through the engine's data pass and its survival across a
resume, and end-to-end training from real teachers in both scenarios, with and without LSKD."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import distilled_trial, method_with_teacher, tiny_spec, train_batch

from cmkd.errors import UserError
from cmkd.harness.engine.trial import run_trial
from cmkd.methods.mgdfr_losses import co_training_loss, freeze_channels, keep_mask, permutation_mse


def _authors_salience(features, head, student, perms):
    """MST-Distill's loop: per channel, a copy with that column permuted, the head, MSE to the student."""
    out = torch.zeros(features.shape[1], dtype=features.dtype)
    for perm_r in perms:  # one D x B block of permutations per repeat
        for i in range(features.shape[1]):
            y = features.clone()
            y[:, i] = features[perm_r[i], i]
            out[i] += F.mse_loss(head(y), student) / len(perms)
    return out


def test_the_vectorised_salience_is_the_authors_loop_and_a_constant_channel_changes_nothing():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(9, 6, generator=g, dtype=torch.float64)
    feats[:, 2] = 1.5  # shuffling a constant channel changes no logit
    head = torch.nn.Linear(6, 4).double()
    student = torch.randn(9, 4, generator=g, dtype=torch.float64)
    ours = permutation_mse(feats, head, student, torch.Generator().manual_seed(7), repeats=3)
    replay = torch.Generator().manual_seed(7)
    perms = [torch.rand(6, 9, generator=replay, dtype=torch.float32).argsort(dim=1) for _ in range(3)]
    with torch.no_grad():
        assert torch.allclose(ours, _authors_salience(feats, head, student, perms), rtol=1e-12, atol=0)
        assert float(ours[2]) == pytest.approx(float(F.mse_loss(head(feats), student)), rel=1e-12)


def test_the_lowest_scores_are_removed_and_frozen_to_their_batch_mean():
    keep = keep_mask(torch.tensor([0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.8, 0.4]), 0.75)
    assert keep.tolist() == [False, True, False, False, False, False, True, False]  # 6 of 8 removed: all but 0.9, 0.8
    feats = torch.arange(24, dtype=torch.float64).view(3, 8)
    frozen = freeze_channels(feats, keep)
    assert torch.equal(frozen[:, keep], feats[:, keep])
    assert torch.equal(frozen[:, ~keep], feats[:, ~keep].mean(0).expand(3, -1))


def test_co_training_loss_by_hand():
    t, s, y = torch.tensor([[math.log(3), 0.0]]), torch.zeros(1, 2), torch.tensor([0])
    total, parts = co_training_loss(t, s, y)
    # CE_t = -log(3/4), CE_s = log 2, MSE = (log 3)^2 / 2
    assert float(total) == pytest.approx(-math.log(0.75) + math.log(2) + math.log(3) ** 2 / 2, rel=1e-6)
    assert set(parts) == {"co_ce_teacher", "co_ce_student", "co_mse"}


def _grads(module):
    return [p.grad is not None for p in module.parameters()]


def test_each_stage_trains_its_own_networks(teachers):
    method, data, split = method_with_teacher(teachers, "mgdfr")
    method.on_epoch_start(0, 4)
    assert method.co_epochs == 2 and method.wants_data_pass(2, 4) and not method.wants_data_pass(1, 4)
    batch = train_batch(data, split)
    total, parts = method.loss(batch, 0)
    total.backward()
    assert all(_grads(method.co_teacher)) and all(_grads(method.co_student)) and not any(_grads(method.net))
    assert "co_mse" in parts
    method.zero_grad(set_to_none=True)
    method.eval()
    with torch.no_grad():
        method.data_pass([batch, train_batch(data, split, start=16)])
    assert torch.isfinite(method.salience).all() and int(method.keep.sum()) == 512 - int(0.75 * 512)
    method.train()
    total, parts = method.loss(batch, 2)
    total.backward()
    assert all(_grads(method.net)) and not any(_grads(method.co_teacher)) and not any(_grads(method.co_student))
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
    assert set(parts) == {"ce", "kd"}



def test_one_epoch_is_refused_before_any_compute():
    from cmkd.harness.sweep.bench_config import load_config
    from cmkd.harness.sweep.plan import build_plan

    with pytest.raises(UserError, match=r"method 'mgdfr' needs 2 epochs or more, got 1: pass --epochs 2"):
        build_plan(load_config("smoke", overrides=["methods=['mgdfr']", "scenarios=['cross-modal']"]))
    with pytest.raises(UserError, match=r"method 'mgdfr' needs 2 epochs or more, got 1"):
        run_trial(tiny_spec(method="mgdfr", modality="depth", scenario="cross-modal", epochs=1), runs_root="/nonexistent")


def test_the_salience_survives_a_resume_and_the_result_is_the_same(tmp_path):
    class Stop(Exception):
        pass

    teachers = tmp_path / "runs"  # a 4-epoch trial looks up a 4-epoch teacher
    run_trial(tiny_spec(method="student", modality="rgb", epochs=4), runs_root=teachers)
    spec = tiny_spec(method="mgdfr", modality="depth", scenario="cross-modal", epochs=4)
    whole = run_trial(spec, runs_root=teachers, out_dir=tmp_path / "whole")
    for stop_after in (2, 3):  # before the salience pass, and after it
        seen = []

        def stop(report, seen=seen, stop_after=stop_after):
            seen.append(report)
            if len(seen) == stop_after:
                raise Stop

        out = tmp_path / f"stopped{stop_after}"
        with pytest.raises(Stop):
            run_trial(spec, runs_root=teachers, out_dir=out, on_epoch=stop)
        resumed = run_trial(spec, runs_root=teachers, out_dir=out)
        assert resumed.resumed_from == [stop_after]
        assert resumed.outputs["depth"]["test_f1"] == whole.outputs["depth"]["test_f1"]
        assert [h["kept_channels"] for h in resumed.history] == [h["kept_channels"] for h in whole.history]


@pytest.mark.parametrize("scenario", ["cross-modal", "multi-modal"])
@pytest.mark.parametrize("lskd", [False, True], ids=["orig", "lskd"])
def test_mgdfr_trains_end_to_end_from_a_real_teacher(teachers, scenario, lskd):
    res = distilled_trial(teachers, "mgdfr", scenario, lskd)
    assert "train/co_mse" in res.history[0] and "train/kd" in res.history[1]
    assert res.history[1]["kept_channels"] == 128


@pytest.mark.ray
def test_mgdfr_runs_in_a_two_epoch_bench_and_fills_its_rows(ray_session, tmp_path, capsys):
    from cmkd.harness.cli.main import main

    out = tmp_path / "b"
    code = main(["bench", "--profile", "smoke", "--out", str(out), "--set", "methods=['mgdfr']", "--set", "ablations=[]",
                 "--set", "scenarios=['cross-modal', 'multi-modal']", "--epochs", "2"])
    assert code == 0, capsys.readouterr().err
    md = (out / "tables" / "tables.md").read_text()
    for table in md.split("Table ")[1:3]:
        lines = table.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("| MGDFR"))
        rows = lines[at:at + 2]
        cells = [c.strip() for row in rows for c in row.strip("|").split("|")[2:]]
        assert cells and all(c not in ("", "-") for c in cells), rows  # ORIG and w/ LSKD, every column trained
