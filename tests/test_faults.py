"""Faults that must not lose or misreport work: a full disk, a killed prepare."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
import torch

from cmkd.harness.engine.io import DiskFull, disk_full


def test_a_full_disk_is_named_not_torchs_unexpected_pos(tmp_path):
    # a real ENOSPC from the kernel: /dev/full accepts opens and fails every write
    with pytest.raises(OSError) as real:
        with open("/dev/full", "wb") as fh:
            torch.save({"w": torch.zeros(100_000)}, fh)
            fh.flush()
    assert real.value.errno == errno.ENOSPC
    target = tmp_path / "runs" / "best_rgb.pt"
    full = disk_full(real.value, target)
    assert isinstance(full, DiskFull) and str(full).startswith(f"no space left on {target.parent}")
    # what torch's zip writer raises on a short write (the message users saw)
    zip_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    assert "no space left on" in str(disk_full(zip_error, target))
    assert disk_full(RuntimeError("shape mismatch"), target) is None
    assert disk_full(OSError(errno.EACCES, "denied"), target) is None


def test_a_write_that_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    from cmkd.harness.engine import io

    def fails(fh):
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull, match="no space left on"):
        io._atomic(tmp_path / "x.pt", fails)
    assert list(tmp_path.iterdir()) == []


def test_stale_partial_caches_of_dead_prepares_are_removed(tmp_path):
    from cmkd.datasets.cache import remove_stale_partials

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    out = tmp_path / "cache"
    stale = tmp_path / f".cache.partial-{dead_pid}"
    live = tmp_path / f".cache.partial-{os.getpid()}"
    other = tmp_path / f".othercache.partial-{dead_pid}"
    for p in (stale, live, other):
        p.mkdir()
        (p / "rgb.npy").write_bytes(b"x" * 1000)
    assert remove_stale_partials(out) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


def test_cmkd_prepare_cleans_what_a_killed_prepare_left(tmp_path, capsys):
    from real_fixtures import write_eurosat

    from cmkd.harness.cli.main import main

    root = tmp_path / "raw"
    write_eurosat(root, per_class=3)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp_path / f".cache.partial-{int(dead.stdout)}"
    left.mkdir()
    (left / "ms.npy").write_bytes(b"x" * 10_000)
    assert main(["prepare", "eurosat-ms-sar", "--root", str(root), "--out", str(tmp_path / "cache")]) == 0
    assert not left.exists() and (tmp_path / "cache" / "manifest.json").is_file()


def test_a_trial_folder_in_use_is_refused_naming_its_holder(tmp_path, capsys):
    import socket

    from helpers import TINY_DATA

    from cmkd.harness.cli.main import main
    from cmkd.harness.engine.locks import FolderLock

    folder = tmp_path / "trial"
    args = ["train", "--method", "student", "--dataset", "synthetic", "--modality", "rgb", "--epochs", "1",
            "--data-opt", f"n_samples={TINY_DATA['n_samples']}", "--data-opt", f"image_size={TINY_DATA['image_size']}",
            "--out", str(folder)]
    with FolderLock(folder, "trial"):  # another holder (flock locks are per open file, even in one process)
        assert main(args) == 2
    err = capsys.readouterr().err
    assert f"is in use by another cmkd trial (PID {os.getpid()} on {socket.gethostname()}" in err
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # nothing written while held
    assert main(args) == 0  # released: it trains
