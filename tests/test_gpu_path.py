"""The GPU path (channels_last, torch.compile; bf16 autocast is CUDA-only) computes what the plain path
computes, within float tolerance, checked on the CPU: a KD step with its frozen teacher in channels_last,
and a whole compiled + channels_last trial against the plain one. Its speed is measured on a GPU by
benchmarks/gpu_throughput.py, never here."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_DATA, tiny_spec

from cmkd.harness.engine.augment import augment
from cmkd.harness.engine.data import data_info, load_data
from cmkd.harness.engine.step import make_optimizer, nhwc, optimise, train_step
from cmkd.harness.engine.trial import run_trial
from cmkd.methods import Batch, get_method
from cmkd.methods.backbones import Classifier


def _kd_student(info, channels_last: bool):
    torch.manual_seed(0)
    teacher = Classifier(info.channels["rgb"], info.n_classes).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    cls = get_method("kdv1")
    method = cls(info, "depth", cls.Options(), teacher, "cross-modal").train()
    loss_fn = optimise(method, channels_last=channels_last)
    return method, make_optimizer(method.param_groups(1e-3), 1e-3), loss_fn


def test_channels_last_kd_steps_match_the_plain_ones():
    """Same gradients at the first step, same losses over three Adam steps (Adam's normalised update
    turns float noise in near-zero gradients into lr-sized weight differences, so weights are not compared)."""
    data = load_data("synthetic", None, TINY_DATA)
    info = data_info(data)
    raw = {m: torch.from_numpy(a[:32]) for m, a in data.modalities.items()}
    y = torch.from_numpy(data.labels[:32])
    runs = {}
    for cl in (False, True):
        method, opt, loss_fn = _kd_student(info, cl)
        assert method.teacher.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last) == cl
        g = torch.Generator().manual_seed(1)
        x = augment(raw, g, True)
        total, _ = loss_fn(Batch(x=nhwc(x) if cl else x, y=y), 0)
        total.backward()
        grads = {n: p.grad.detach().clone() for n, p in method.named_parameters() if p.grad is not None}
        losses = []
        for epoch in range(3):
            x = augment(raw, g, True)
            total, _ = train_step(method, opt, Batch(x=nhwc(x) if cl else x, y=y), epoch, loss_fn=loss_fn)
            losses.append(float(total))
        runs[cl] = (losses, grads)
    assert runs[True][0][0] == pytest.approx(runs[False][0][0], rel=1e-5)  # the same weights: the same loss
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-2)  # then Adam's float noise, nothing more
    assert set(runs[True][1]) == set(runs[False][1]) and runs[False][1]
    for k, v in runs[False][1].items():
        torch.testing.assert_close(runs[True][1][k], v, rtol=1e-3, atol=1e-4 * float(v.abs().max()), msg=k)


@pytest.mark.slow
def test_a_compiled_channels_last_trial_matches_the_plain_one(tmp_path):
    plain = run_trial(tiny_spec(epochs=1), out_dir=tmp_path / "plain")
    fast = run_trial(tiny_spec(epochs=1, train={"channels_last": True, "compile": True}), out_dir=tmp_path / "fast")
    assert fast.trial_id != plain.trial_id  # other float rounding: another trial
    assert fast.history[0]["train/loss"] == pytest.approx(plain.history[0]["train/loss"], rel=1e-3)
    # the evaluation path (channels_last inputs) predicts the same classes from nearly the same weights
    assert fast.history[0]["val_f1/rgb"] == pytest.approx(plain.history[0]["val_f1/rgb"], abs=0.05)


def test_the_gpu_throughput_script_still_builds_its_steps():
    """The script runs only where a GPU is lent (rarely): its steps are built and timed here on the CPU,
    plain, so that a change to the engine's signatures breaks this test rather than a GPU session."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "gpu_throughput.py"
    spec = importlib.util.spec_from_file_location("gpu_throughput", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    cpu = torch.device("cpu")
    for kind in ("student", "discomkd"):
        rate = script.images_per_s(script.build(kind, 16, 8, cpu, optimised=False), 8, 1, cpu)
        assert rate > 0
