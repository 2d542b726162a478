"""Data at the paper's scale: ``cmkd prepare`` streams rows into the cache (bounded memory, every core,
the same bytes as the in-memory path), refuses a machine too small before it starts, and a prepared
cache is read in place: memory-mapped, shared between processes, never copied by the driver."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from real_fixtures import write_eurosat, write_tristar

import cmkd.datasets.npyfile as npyfile
from cmkd.datasets import get_dataset
from cmkd.datasets.cache import CONTENT_FILE, read_cache, write_cache
from cmkd.datasets.npyfile import RowFile
from cmkd.datasets.official import read_official
from cmkd.datasets.preprocess import file_percentiles, percentile_stats
from cmkd.errors import UserError
from cmkd.harness.cli.main import main


def test_a_row_file_is_a_standard_npy_written_and_read_by_blocks(tmp_path):
    a = np.random.default_rng(0).random((101, 3, 5, 7), dtype=np.float32)
    with RowFile.create(tmp_path / "a.npy", a.shape) as f:
        for start in reversed(range(0, 101, 13)):  # any order: each block lands in its place
            f.write(start, a[start:start + 13])
        with pytest.raises(ValueError, match="do not fit"):
            f.write(100, a[:2])
    np.save(tmp_path / "ref.npy", a)
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "ref.npy").read_bytes()
    with RowFile(tmp_path / "a.npy") as f:
        blocks = list(f.blocks(block_bytes=5 * a[0].nbytes))
    assert [s for s, _ in blocks] == list(range(0, 101, 5))
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), a)
    with open(tmp_path / "a.npy", "r+b") as fh:
        fh.truncate(1000)
    with RowFile(tmp_path / "a.npy") as f, pytest.raises(EOFError, match="truncated"):
        f.read(0, 101)


@pytest.mark.parametrize("shape", [(400, 13, 6, 6), (150, 1, 9, 11)])
def test_percentiles_from_the_file_equal_numpy_on_the_array(tmp_path, shape, monkeypatch):
    rng = np.random.default_rng(1)
    a = rng.normal(size=shape).astype(np.float32)
    a[::4] = np.round(a[::4])  # ties, as 16-bit images have
    np.save(tmp_path / "a.npy", a)
    monkeypatch.setattr(npyfile, "BLOCK_BYTES", 7 * a[0].nbytes)  # many blocks, the last one short
    for rows in (None, np.sort(rng.choice(shape[0], shape[0] // 3, replace=False))):
        for pass_bytes in (1, a.nbytes // 4, 10 * a.nbytes):  # one channel a pass, a few, all
            with RowFile(tmp_path / "a.npy") as f:
                assert file_percentiles(f, rows, pass_bytes, threads=2) == percentile_stats(a, rows)  # exactly


def test_prepare_in_small_blocks_writes_what_the_in_memory_path_computes(tmp_path, monkeypatch, capsys):
    write_tristar(tmp_path / "raw", shots_per_split=2, frames=9)
    monkeypatch.setattr(npyfile, "BLOCK_BYTES", 3000)  # a few rows a block
    for norm in ("all", "train:0"):
        out = tmp_path / f"cache-{norm.replace(':', '')}"
        assert main(["prepare", "tristar", "--root", str(tmp_path / "raw"), "--out", str(out), "--data-opt",
                     "image_size=10", "--norm-stats", norm, "--workers", "2"]) == 0
        direct = get_dataset("tristar", root=str(tmp_path / "raw"), image_size=10, norm_stats=norm).load()
        cached = read_cache(out, "tristar", verify=True)
        for m in direct.modalities:
            np.testing.assert_array_equal(np.asarray(cached.modalities[m]), direct.modalities[m])
        np.testing.assert_array_equal(cached.published, direct.published)
        assert cached.fingerprint() == direct.fingerprint()  # hashed from the files, a block at a time


def test_prepare_refuses_a_machine_too_small_before_decoding(tmp_path, capsys):
    write_eurosat(tmp_path / "raw", per_class=4)
    out = tmp_path / "cache"
    # 12 samples of 15 x 20000 x 20000 float32: 288 GB of cache, more disk and memory than any CI machine has
    code = main(["prepare", "eurosat-ms-sar", "--root", str(tmp_path / "raw"), "--out", str(out),
                 "--data-opt", "image_size=20000"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("cmkd: error: preparing eurosat-ms-sar (12 samples)")
    assert "needs about 288.0 GB of disk" in err and "GB free" in err and "GB of memory" in err
    assert "GB available" in err and "image_size" in err
    assert not out.exists() and not list(tmp_path.glob(".cache.partial-*"))


def test_a_cache_is_read_in_place_and_its_check_kept_beside_it(tmp_path):
    from helpers_cache import official

    root = write_cache(tmp_path / "cache", read_official(official(tmp_path / "arr"), {"RGB": "rgb", "DEPTH": "depth"},
                                                         "sunrgbd", "rgb"), {"options": {}})
    data = read_cache(root)
    assert all(isinstance(a, np.memmap) for a in data.modalities.values())  # no copy into memory
    assert data.meta["values_checked"] and (root / CONTENT_FILE).is_file()
    # a trial's tensors are views of the map: rows are gathered from the page cache per batch
    import torch

    assert torch.from_numpy(data.modalities["rgb"]).data_ptr() == data.modalities["rgb"].ctypes.data
    # a value spoilt after the prepare: the files changed, so they are checked again, and refused
    rgb = np.load(root / "rgb.npy")
    rgb[5, 0, 0, 0] = np.nan
    np.save(root / "rgb.npy", rgb)
    with pytest.raises(UserError, match=r"modality 'rgb': 1 value\(s\) NaN or infinite in the rows from 5 on"):
        read_cache(root)


def _mapped(pid: int | str, folder: Path) -> tuple[int, int]:
    """(RSS, PSS) in kB of the process's mappings of files under ``folder``."""
    rss = pss = 0
    inside = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's first line
            inside = len(head) >= 6 and head[5].startswith(str(folder))
        elif inside and line.startswith("Rss:"):
            rss += int(head[1])
        elif inside and line.startswith("Pss:"):
            pss += int(head[1])
    return rss, pss


@pytest.mark.skipif(not Path("/proc/self/smaps").is_file(), reason="needs Linux's /proc/<pid>/smaps")
def test_two_processes_share_one_copy_of_a_cache_and_planning_touches_none(tmp_path):
    from helpers_cache import official

    arrays = read_official(official(tmp_path / "arr", n=2000, side=32), {"RGB": "rgb", "DEPTH": "depth"}, "sunrgbd",
                           "rgb")
    root = write_cache(tmp_path / "cache", arrays, {"options": {}})
    read_cache(root)  # the content check, once
    size_kb = sum(f.stat().st_size for f in root.glob("*.npy")) // 1024
    reader = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from cmkd.datasets.cache import read_cache
        data = read_cache({str(root)!r})
        total = sum(float(a.sum()) for a in data.modalities.values())  # every page of every modality
        print("ready", flush=True)
        sys.stdin.readline()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", reader], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        seen = [_mapped(p.pid, root) for p in procs]
    finally:
        for p in procs:
            p.communicate("\n", timeout=60)
    for rss, pss in seen:
        assert rss >= 0.95 * size_kb  # each maps all of it...
        assert pss <= 0.6 * size_kb  # ...and owns half: one copy in the page cache for both
    # the driver plans from the cache without touching its arrays
    from cmkd.harness.sweep.bench_config import load_config
    from cmkd.harness.sweep.plan import build_plan, entry_infos

    cfg = load_config("smoke", overrides=[f'datasets=[{{name = "sunrgbd", root = "{root}"}}]', "seeds=[0]",
                                          "scenarios=['cross-modal']", "methods=[]", "lskd=[false]"])
    build_plan(cfg, entry_infos(cfg))
    assert _mapped("self", root)[0] < 1024  # kB: not one modality's pages resident in the planning process


def test_the_plan_counts_each_data_set_s_first_load(tmp_path, capsys):
    write_eurosat(tmp_path / "raw", per_class=4)
    assert main(["prepare", "eurosat-ms-sar", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "cache")]) == 0

    def dry_run(root: Path) -> str:
        capsys.readouterr()
        assert main(["bench", "--profile", "smoke", "--dry-run", "--set", "seeds=[0]", "--set", "methods=[]",
                     "--set", "scenarios=['cross-modal']", "--set", f'datasets=[{{name = "eurosat-ms-sar", root = "{root}"}}]']) == 0
        return capsys.readouterr().out

    assert "eurosat-ms-sar: every worker decodes the raw layout itself (12 samples x" in dry_run(tmp_path / "raw")
    assert "eurosat-ms-sar: first read of its 0.00 GB cache at RAM speed measured, once per machine" in \
        dry_run(tmp_path / "cache")
