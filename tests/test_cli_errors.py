"""Every user error: one line naming the problem and the fix, exit code 2, before any training."""

from __future__ import annotations

import pytest

from cmkd.harness.cli.main import main

BASE = ["train", "--dataset", "synthetic", "--data-opt", "n_samples=120", "--data-opt", "image_size=16"]


def run_cli(capsys, args):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "--method", "studnet", "--dataset", "synthetic", "--modality", "rgb"],
         ["unknown method 'studnet'", "did you mean 'student'", "teacher-mm"]),
        (["train", "--method", "student", "--dataset", "synth", "--modality", "rgb"],
         ["unknown data set 'synth'", "synthetic"]),
        (BASE + ["--method", "student", "--modality", "sar"], ["has no modality 'sar'", "rgb, depth"]),
        (BASE + ["--method", "student"], ["pass --modality"]),
        (BASE + ["--method", "student", "--modality", "rgb", "--epochs", "0"], ["epochs must be a positive integer"]),
        (BASE + ["--method", "student", "--modality", "rgb", "--batch-size", "0"], ["batch size must be at least 2"]),
        (BASE + ["--method", "student", "--modality", "rgb", "--lr", "-1"], ["learning rate"]),
        (BASE + ["--method", "student", "--modality", "rgb", "--data-opt", "colour=3"], ["no option 'colour'"]),
        (BASE + ["--method", "teacher-mm", "--modality", "rgb"], ["drop --modality"]),
        (BASE + ["--method", "student", "--modality", "rgb", "--lskd"], ["--lskd does not apply"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, args, expected):
    code, out, err = run_cli(capsys, args + ["--runs", str(tmp_path / "runs")])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cmkd: error: "), err
    for piece in expected:
        assert piece in lines[0]
    assert "Traceback" not in err and "epoch" not in out
    assert not (tmp_path / "runs").exists()  # nothing started


def test_output_folder_holding_another_run_is_refused(capsys, tmp_path):
    out = tmp_path / "trial"
    code, _, _ = run_cli(capsys, BASE + ["--method", "student", "--modality", "rgb", "--epochs", "1", "--out", str(out)])
    assert code == 0
    code, stdout, err = run_cli(capsys, BASE + ["--method", "student", "--modality", "depth", "--epochs", "1", "--out", str(out)])
    assert code == 2 and "holds another run" in err and "--out" in err
    assert "epoch" not in stdout


def test_methods_and_datasets_are_listed(capsys):
    code, out, _ = run_cli(capsys, ["methods"])
    assert code == 0 and "student" in out and "teacher-mm" in out
    code, out, _ = run_cli(capsys, ["datasets"])
    assert code == 0 and "synthetic" in out and "rgb (3)" in out
