"""What a user sees of the CLI's small surfaces: --version, the data-set listing, file permissions, device names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import tiny_spec

import cmkd
from cmkd.harness.cli.main import main
from cmkd.harness.engine.trial import run_trial


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"cmkd {cmkd.__version__}"


def test_datasets_lists_channels_it_cannot_know_yet_as_unknown(capsys):
    assert main(["datasets"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("official-arrays"))
    assert "rgb (?)" in row and "(0)" not in row and "from the data" in row and " 0 " not in row


def test_written_files_follow_the_umask_and_the_device_is_named_once(tmp_path):
    res = run_trial(tiny_spec(epochs=1), runs_root=tmp_path, export=True)
    old = os.umask(0o022)
    os.umask(old)
    folder = Path(res.out_dir)
    for name in ("result.json", "spec.json", "best_rgb.pt", "model_rgb.pt2", "model_rgb.json"):
        assert (folder / name).stat().st_mode & 0o777 == 0o666 & ~old, name  # not mkstemp's 0600
    assert res.device.startswith("cpu (") and ":" not in res.device  # "cpu (x86_64)", not "cpu:cpu"
