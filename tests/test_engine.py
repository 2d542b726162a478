"""The engine on real (tiny) trainings: selection, F1, determinism, resume after a real kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_DATA, tiny_spec

from cmkd.harness.engine.data import data_info, load_data
from cmkd.harness.engine.metrics import weighted_f1
from cmkd.harness.engine.trial import run_trial
from cmkd.methods import get_method


def test_student_trial_reports_sklearn_f1_of_its_best_checkpoint(runs):
    spec = tiny_spec(epochs=3)
    res = run_trial(spec, runs_root=runs)
    rec = res.outputs["rgb"]
    # the model selected is the epoch of best validation F1 (first one on ties)
    val = [h["val_f1/rgb"] for h in res.history]
    assert rec["best_epoch"] == int(np.argmax(val)) + 1
    assert rec["val_f1"] == pytest.approx(max(val))
    # reload the saved best weights, predict the test split, compare with scikit-learn directly
    data = load_data("synthetic", None, TINY_DATA)
    split = np.load(Path(res.out_dir) / "split.npz")
    method = get_method("student")(data_info(data), "rgb", get_method("student").Options())
    method.export("rgb").load_state_dict(torch.load(Path(res.out_dir) / "best_rgb.pt", weights_only=True))  # the model only
    method.eval()
    with torch.no_grad():
        pred = method.predict({"rgb": torch.from_numpy(data.modalities["rgb"][split["test"]])})["rgb"].argmax(1).numpy()
    from sklearn.metrics import f1_score

    assert rec["test_f1"] == pytest.approx(f1_score(data.labels[split["test"]], pred, average="weighted"), abs=1e-9)
    assert weighted_f1(data.labels[split["test"]], pred) == pytest.approx(rec["test_f1"])
    # test samples never reached training or selection
    assert not set(split["test"].tolist()) & (set(split["train"].tolist()) | set(split["val"].tolist()))


def test_same_seed_same_numbers_on_cpu(tmp_path):
    a = run_trial(tiny_spec(), out_dir=tmp_path / "a")
    b = run_trial(tiny_spec(), out_dir=tmp_path / "b")
    assert a.outputs == b.outputs
    assert [h["train/loss"] for h in a.history] == [h["train/loss"] for h in b.history]


def test_methods_of_a_repetition_share_one_split(runs):
    a = run_trial(tiny_spec(modality="depth", epochs=1), runs_root=runs)
    b = run_trial(tiny_spec(method="teacher-mm", modality=None, epochs=1), runs_root=runs)
    c = run_trial(tiny_spec(modality="depth", epochs=1, seed=1), runs_root=runs)
    assert a.split_fingerprint == b.split_fingerprint != c.split_fingerprint
    assert set(b.outputs) == {"all"}


def test_finished_trial_is_found_not_retrained(runs):
    a = run_trial(tiny_spec(epochs=1), runs_root=runs)
    b = run_trial(tiny_spec(epochs=1), runs_root=runs)
    assert b.reused and b.outputs == a.outputs


def _train_cmd(out: Path, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cmkd", "train", "--method", "student", "--dataset", "synthetic", "--modality",
            "rgb", "--epochs", str(epochs), "--batch-size", "32", "--threads", "1", "--out", str(out),
            "--data-opt", f"n_samples={TINY_DATA['n_samples']}", "--data-opt", f"image_size={TINY_DATA['image_size']}",
            "--json", *extra]


def _printed_epochs(stdout: str) -> list[int]:
    return [int(line.split()[1].split("/")[0]) for line in stdout.splitlines() if line.startswith("epoch")]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The uninterrupted 5-epoch run every interrupted one must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "ref"
    ref = subprocess.run(_train_cmd(out, 5), capture_output=True, text=True, check=True)
    return json.loads(ref.stdout.strip().splitlines()[-1])


def test_killed_trial_resumes_from_its_last_checkpoint_with_the_same_result(reference_run, tmp_path):
    """SIGKILL (a lost node): the run resumes from the last checkpoint the policy wrote (here every 2
    epochs, no time budget) and ends with the uninterrupted run's numbers."""
    epochs, policy = 5, ["--checkpoint-every", "2", "--checkpoint-budget", "0"]
    out = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(out, epochs, *policy), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    ckpt = out / "checkpoint.pt"
    while time.time() < deadline and proc.poll() is None and not ckpt.exists():
        time.sleep(0.02)
    assert proc.poll() is None, "the trial finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = torch.load(ckpt, weights_only=False)["state"]["epoch"]
    assert done_before in (2, 4) and not (out / "result.json").exists()  # the policy's epochs, no other

    again = subprocess.run(_train_cmd(out, epochs, *policy), capture_output=True, text=True, check=True)
    assert _printed_epochs(again.stdout) == list(range(done_before + 1, epochs + 1))  # resumed, not restarted
    result = json.loads(again.stdout.strip().splitlines()[-1])
    assert result["outputs"] == reference_run["outputs"] and result["epochs_run"] == epochs
    assert result["resumed_from"] == [done_before]


def test_sigterm_ends_the_epoch_writes_a_checkpoint_and_the_same_command_resumes_exactly(reference_run, tmp_path):
    """A stop signal checkpoints whatever the policy (here: none by epochs, none by time)."""
    epochs, policy = 5, ["--checkpoint-every", "0", "--checkpoint-budget", "0"]
    out = tmp_path / "stopped"
    proc = subprocess.Popen(_train_cmd(out, epochs, *policy), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # the first epoch's line: training is under way
    assert first.startswith("epoch"), first
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "run the same command to resume" in stderr and "Traceback" not in stderr
    done_before = torch.load(out / "checkpoint.pt", weights_only=False)["state"]["epoch"]
    assert 1 <= done_before < epochs and _printed_epochs(first + stdout)[-1] == done_before

    again = subprocess.run(_train_cmd(out, epochs, *policy), capture_output=True, text=True, check=True)
    assert _printed_epochs(again.stdout) == list(range(done_before + 1, epochs + 1))
    result = json.loads(again.stdout.strip().splitlines()[-1])
    assert result["outputs"] == reference_run["outputs"] and result["resumed_from"] == [done_before]
    assert not (out / "checkpoint.pt").exists()  # dead weight once the result exists


@pytest.mark.slow
def test_rich_modality_beats_the_poor_one_after_short_training(tmp_path):
    opts = {"n_samples": 360, "image_size": 16}
    f1 = {}
    for m in ("rgb", "depth"):
        f1[m] = run_trial(tiny_spec(modality=m, epochs=6, dataset_options=opts), runs_root=tmp_path).outputs[m]["test_f1"]
    assert f1["rgb"] > f1["depth"] + 0.15, f1
