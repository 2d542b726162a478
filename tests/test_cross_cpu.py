"""What is promised across machines. A tiny cell shaped like the default benchmark's (narrow ResNet-18, the
synthetic data's shared regime, STUDENT and KDv1 on depth) is trained in fresh processes with this CPU's
kernels and with another instruction set's (``ATEN_CPU_CAPABILITY`` for torch's own kernels,
``ONEDNN_MAX_CPU_ISA`` for the convolutions: another CPU's float rounding).

- In float32 (the paper's precision) the digits move: each cell's mean on the other kernels lies inside
  the 95% interval the first run states for it, and that is all that is promised.
- In float64 (``train.precision``, the default benchmark's) the numbers are the same, on the other
  instruction set and with two threads instead of one (at most one output may differ, by a test prediction
  between near-tied logits)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cmkd.results.stats import t_interval

CELL = r"""
import json, sys, torch
from cmkd.harness.engine.spec import TrainConfig, TrialSpec
from cmkd.harness.engine.trial import run_trial
precision, threads, seeds = sys.argv[2], int(sys.argv[3]), range(int(sys.argv[4]))
torch.set_num_threads(threads)
train = TrainConfig(epochs=4, batch_size=64, lr=3e-3, width=8, threads=threads, precision=precision)
data = {"n_samples": 360, "image_size": 16, "shared": 1.0}
out = {"capability": torch.backends.cpu.get_cpu_capability(), "student": [], "kdv1": []}
for seed in seeds:
    spec = lambda method, modality, scenario="single": TrialSpec(dataset="synthetic", method=method, seed=seed,
        modality=modality, scenario=scenario, dataset_options=data, train=train)
    run_trial(spec("student", "rgb"), runs_root=sys.argv[1])
    for method, scenario in (("student", "single"), ("kdv1", "cross-modal")):
        r = run_trial(spec(method, "depth", scenario), runs_root=sys.argv[1], keep_weights=False)
        out[method].append(100 * r.outputs["depth"]["test_f1"])
print(json.dumps(out))
"""


def other_kernels(current: str) -> dict[str, str]:
    """Environment that makes torch use another instruction set than this CPU's own (AVX2 on an AVX-512
    machine; no vector kernels on an AVX2 one), convolutions included."""
    if current.upper().startswith("AVX512"):
        return {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    return {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}


def run_cell(tmp: Path, env: dict[str, str], precision: str = "float32", threads: int = 1, seeds: int = 3) -> dict:
    run = subprocess.run([sys.executable, "-c", CELL, str(tmp), precision, str(threads), str(seeds)],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, **env})
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_default_like_cell_moves_only_within_its_interval_on_another_instruction_set(tmp_path):
    here = run_cell(tmp_path / "here", {})
    env = other_kernels(here["capability"])
    there = run_cell(tmp_path / "there", env)
    assert there["capability"] != here["capability"], "the other instruction set did not take effect"
    for method in ("student", "kdv1"):
        low, high = t_interval(here[method])
        mean = sum(there[method]) / len(there[method])
        assert low <= mean <= high, (method, here[method], there[method], env)


@pytest.mark.slow
def test_a_float64_cell_gives_the_same_numbers_on_another_instruction_set_and_thread_count(tmp_path):
    here = run_cell(tmp_path / "here", {}, "float64", seeds=2)
    env = other_kernels(here["capability"])
    there = run_cell(tmp_path / "there", env, "float64", seeds=2)
    assert there["capability"] != here["capability"], "the other instruction set did not take effect"
    two = run_cell(tmp_path / "two", {}, "float64", threads=2, seeds=2)
    assert len(set(here["student"])) == 2 and len(set(here["kdv1"])) == 2, here  # the seeds differ: not degenerate
    for other, what in ((there, env), (two, "two threads")):
        mine = here["student"] + here["kdv1"]
        theirs = other["student"] + other["kdv1"]
        # equal to the digit; at most one output may differ, by one test prediction between near-tied logits (the
        # default's 180 outputs on two threads: one differed, by 0.006 points, at the same best epoch and accuracy)
        unequal = [(a, b) for a, b in zip(mine, theirs) if abs(a - b) > 1e-9]
        assert len(unequal) <= 1 and all(abs(a - b) < 3 for a, b in unequal), (what, here, other)
