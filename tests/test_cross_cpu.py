"""What is promised across machines: conclusions and intervals, not digits. A tiny cell shaped like the
default benchmark's (narrow ResNet-18, the synthetic data's shared regime, STUDENT and KDv1 on depth over
three seeds) is trained twice in fresh processes: with this CPU's kernels, and with another instruction
set's (``ATEN_CPU_CAPABILITY`` for torch's own kernels, ``ONEDNN_MAX_CPU_ISA`` for the convolutions:
another CPU's float rounding). Each cell's mean on the other kernels lies inside the 95% interval the
first run states for it."""

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
torch.set_num_threads(1)
train = TrainConfig(epochs=4, batch_size=64, lr=3e-3, width=8, threads=1)
data = {"n_samples": 360, "image_size": 16, "shared": 1.0}
out = {"capability": torch.backends.cpu.get_cpu_capability(), "student": [], "kdv1": []}
for seed in (0, 1, 2):
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


def run_cell(tmp: Path, env: dict[str, str]) -> dict:
    run = subprocess.run([sys.executable, "-c", CELL, str(tmp)], capture_output=True, text=True, timeout=600,
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
