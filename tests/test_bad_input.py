"""Every bad input is one line on stderr, exit 2, before any compute, and leaves nothing behind.

One table: each row names how to set the input up (a tiny real file in a real format where one is
needed), the command, and a piece of the message that must name the problem.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_DATA
from torch import nn

from cmkd.harness.cli.main import main

SYN = ["--dataset", "synthetic", "--data-opt", f"n_samples={TINY_DATA['n_samples']}",
       "--data-opt", f"image_size={TINY_DATA['image_size']}"]
STUDENT = ["train", "--method", "student", "--modality", "rgb", "--epochs", "1", *SYN]


# ---- set-ups: each writes real files under tmp and returns the words to substitute into the command ----
def official(tmp: Path, **broken) -> Path:
    root = tmp / "arrays"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(root / "RGB_data_normalized.npy", rng.random((66, 3, 16, 16), dtype=np.float32))
    np.save(root / "DEPTH_data_normalized.npy", rng.random((66, 1, 16, 16), dtype=np.float32))
    np.save(root / "labels.npy", np.repeat(np.arange(6), 11))
    for name, content in broken.items():
        path = root / name
        if isinstance(content, str) and content == "truncated":
            path.write_bytes(path.read_bytes()[:200])
        elif isinstance(content, str) and content == "garbage":
            path.write_bytes(b"not an npy file at all")
        else:
            np.save(path, content)
    return root


def cache(tmp: Path, **broken) -> Path:
    from cmkd.datasets.cache import write_cache

    data = official(tmp / "src")
    from cmkd.datasets.official import read_official

    d = read_official(data, {"RGB": "rgb", "DEPTH": "depth"}, "sunrgbd", "rgb", [f"c{i}" for i in range(10)])
    root = write_cache(tmp / "cache", d, {"options": {"image_size": 16, "norm_stats": "all", "depth_dir": "depth_bfx",
                                                      "list_file": "", "mapping_file": ""}})
    for name, content in broken.items():
        path = root / name
        if content == "truncated":
            path.write_bytes(path.read_bytes()[:300])
        elif content == "missing":
            path.unlink()
        else:
            path.write_text(content)
    return root


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 4, 3), nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


def exported(tmp: Path, garbage: bool = False) -> Path:
    from cmkd.harness.engine.deploy import export_program

    path = tmp / "model_depth.pt2"
    sidecar = {"inputs": [{"modality": "depth", "channels": 1, "image_size": [16, 16], "channel_order": ["depth"],
                           "normalisation": None}], "class_names": ["a", "b", "c"]}
    if garbage:
        path.write_bytes(b"PK\x03\x04 this is no torch.export program")
        (tmp / "model_depth.json").write_text(json.dumps(sidecar))
        np.save(tmp / "x.npy", np.zeros((2, 1, 16, 16), np.float32))  # a right input: the model file is what fails
        return path
    export_program(TinyNet(), [torch.zeros(2, 1, 16, 16)], path, sidecar)
    np.save(tmp / "x.npy", np.zeros((2, 1, 24, 24), np.float32))
    return path


def exported_with(tmp: Path, x: np.ndarray | None = None, drop_modality: bool = False) -> Path:
    """A real exported model with a 16 x 16 depth input ``x`` beside it (x.npy), or a sidecar that lost a key."""
    path = exported(tmp)
    np.save(tmp / "x.npy", x if x is not None else np.zeros((2, 1, 16, 16), np.float32))
    if drop_modality:
        meta = json.loads((tmp / "model_depth.json").read_text())
        del meta["inputs"][0]["modality"]
        (tmp / "model_depth.json").write_text(json.dumps(meta))
    return path


def corrupt_db(tmp: Path) -> Path:
    out = tmp / "bench"
    out.mkdir()
    (out / "mlflow.db").write_bytes(b"this is not sqlite" * 100)
    return out


def mlflow_db(tmp: Path) -> Path:
    path = tmp / "corrupt.db"
    path.write_bytes(b"garbage" * 1000)
    return path


def other_bench(tmp: Path) -> Path:
    root = tmp / "other"
    root.mkdir()
    (root / "bench.json").write_text(json.dumps({"name": "smoke", "config_hash": "0123456789"}))
    return root


def trial_folder(tmp: Path) -> Path:
    root = tmp / "trial"
    root.mkdir()
    (root / "spec.json").write_text(json.dumps({"trial_id": "abc"}))
    return root / "inside"


def a_file(tmp: Path) -> Path:
    path = tmp / "afile"
    path.write_text("x")
    return path


CASES = [
    # bench config values, parsed against the typed config
    ("set-epochs-text", None, ["bench", "--profile", "smoke", "--set", "train.epochs=abc", "--dry-run"], "train.epochs must be an integer, got 'abc'"),
    ("set-epochs-float", None, ["bench", "--profile", "smoke", "--set", "train.epochs=1.5", "--dry-run"], "train.epochs must be an integer, got 1.5"),
    ("set-epochs-bool", None, ["bench", "--profile", "smoke", "--set", "train.epochs=true", "--dry-run"], "train.epochs must be an integer, got True"),
    ("set-seeds-text", None, ["bench", "--profile", "smoke", "--set", "seeds=abc", "--dry-run"], "every entry of seeds must be an integer"),
    ("set-seeds-huge", None, ["bench", "--profile", "smoke", "--set", "seeds=[99999999]", "--dry-run"], "seeds must be distinct integers in 0..4294967"),
    ("set-train-scalar", None, ["bench", "--profile", "smoke", "--set", "train=5", "--dry-run"], "train must be a table"),
    ("set-cpus-text", None, ["bench", "--profile", "smoke", "--set", "resources.cpus_per_trial=x", "--dry-run"], "resources.cpus_per_trial must be a finite number"),
    ("set-lskd-yes", None, ["bench", "--profile", "smoke", "--set", "lskd=yes", "--dry-run"], "every entry of lskd must be true or false, got 'yes'"),
    ("set-datasets-scalar", None, ["bench", "--profile", "smoke", "--set", "datasets=5", "--dry-run"], "a datasets entry must be a name or a table"),
    # train options, seeds, method and data-set options
    ("seed-overflow", None, [*STUDENT, "--seed", "99999999"], "seed must lie in 0..4294967"),
    ("seed-text", None, [*STUDENT, "--seed", "abc"], "argument --seed: invalid int value: 'abc'"),
    ("opt-nan", None, ["train", "--method", "discomkd", "--epochs", "1", *SYN, "--opt", "w_adv=nan"], "option w_adv must be a finite number, got nan"),
    ("opt-text-for-number", None, ["train", "--method", "discomkd", "--epochs", "1", *SYN, "--opt", "grl_lambda=abc"], "option grl_lambda must be a finite number, got 'abc'"),
    ("opt-number-for-bool", None, ["train", "--method", "kdv1", "--modality", "depth", "--epochs", "1", *SYN, "--opt", "lskd=5"], "option lskd must be true or false, got 5"),
    ("data-opt-text", None, ["train", "--method", "student", "--modality", "rgb", "--dataset", "synthetic", "--data-opt", "n_samples=abc"], "data-set option n_samples must be an integer, got 'abc'"),
    ("epochs-flag-zero", None, [*STUDENT[:-2], "--epochs", "0"], "epochs must be a positive integer"),
    ("shared-out-of-range", None, [*STUDENT, "--data-opt", "shared=1.5"], "synthetic: shared must be a number from 0 to 1"),
    ("split-unknown", None, [*STUDENT, "--split", "random"], "train.split must be one of paper, published"),
    ("precision-unknown", None, [*STUDENT, "--precision", "float16"], "train.precision must be one of float32, float64"),
    ("precision-with-amp", None, [*STUDENT, "--precision", "float64", "--amp"], "train.amp (bfloat16 autocast) and "
     "train.precision = float64 contradict"),
    ("bench-precision-unknown", None, ["bench", "--profile", "smoke", "--set", "train.precision='half'", "--out",
                                        "{tmp}/b"], "train.precision must be one of float32, float64"),
    ("split-published-none", None, [*STUDENT, "--split", "published"], "has no published train/test split"),
    ("method-options-lskd", None, ["bench", "--profile", "smoke", "--set", "method_options={kdv1={lskd=true}}", "--dry-run"], "method_options.kdv1.lskd is one of the sweep's axes"),
    ("config-not-utf8", lambda t: (t / "c.toml").write_bytes(b"name = '\xff\xfe'") and t / "c.toml", ["bench", "--config", "{}", "--dry-run"], "not UTF-8 text"),
    ("config-a-folder", lambda t: t, ["bench", "--config", "{}", "--dry-run"], "is a folder; pass a .toml file"),
    ("official-prefix-twice", lambda t: official(t), ["train", "--method", "student", "--dataset", "official-arrays", "--root", "{}", "--data-opt", "prefixes=RGB,RGB", "--modality", "rgb", "--epochs", "1"], "prefix 'RGB' is listed twice"),
    ("tables-out-file", a_file, ["tables", "--paper", "--out", "{}"], "is a file; pass a folder"),
    ("train-out-name-too-long", None, [*STUDENT, "--out", "{tmp}/" + "a" * 300], "File name too long"),
    ("bench-out-path-too-long", None, ["bench", "--profile", "smoke", "--out", "{tmp}/" + "b/" * 2100], "File name too long"),
    ("entry-twice", None, ["bench", "--profile", "smoke", "--set", "datasets=['synthetic', 'synthetic']", "--dry-run"], "is listed twice"),
    ("tables-selection", None, ["tables", "--paper", "--selection", "oracle"], "--selection applies to results"),
    # official-code arrays
    ("official-truncated", lambda t: official(t, **{"RGB_data_normalized.npy": "truncated"}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "is not a readable .npy array"),
    ("official-strings", lambda t: official(t, **{"DEPTH_data_normalized.npy": np.full((66, 1, 2, 2), "a")}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "holds <U1 values, not numbers"),
    ("official-labels-garbage", lambda t: official(t, **{"labels.npy": "garbage"}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "labels.npy is not a readable .npy array"),
    ("official-labels-strings", lambda t: official(t, **{"labels.npy": np.array(["x"] * 66)}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "labels.npy holds <U1 values"),
    ("official-labels-fractional", lambda t: official(t, **{"labels.npy": np.linspace(0, 5, 66)}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "labels must be whole numbers"),
    ("official-empty-valid-idx", lambda t: official(t, **{"train_idx.npy": np.arange(40), "valid_idx.npy": np.zeros(0, np.int64), "test_idx.npy": np.arange(50, 66)}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "valid_idx.npy is empty"),
    ("official-train-val-overlap", lambda t: official(t, **{"train_idx.npy": np.arange(40), "valid_idx.npy": np.arange(35, 45), "test_idx.npy": np.arange(50, 66)}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "train and validation rows overlap (5 rows, e.g. row 35)"),
    ("official-class-never-trained", lambda t: official(t, **{"train_idx.npy": np.arange(11, 40), "valid_idx.npy": np.arange(40, 50), "test_idx.npy": np.r_[np.arange(0, 11), np.arange(50, 66)]}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "class 0 has no training row"),
    ("official-labels-two-columns", lambda t: official(t, **{"labels.npy": np.repeat(np.arange(6), 11).reshape(33, 2)}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "labels.npy: labels must be one per sample (shape N), got shape (33, 2)"),
    ("official-zero-channels", lambda t: official(t, **{"DEPTH_data_normalized.npy": np.zeros((66, 0, 16, 16), np.float32)}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "has no channel or no pixel"),
    ("official-ignores-options", lambda t: official(t), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1", "--data-opt", "image_size=8"], "option image_size cannot apply"),
    ("official-nan", lambda t: official(t, **{"RGB_data_normalized.npy": np.where(np.arange(66)[:, None, None, None] == 7, np.nan, np.ones((66, 3, 16, 16), np.float32))}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "modality 'rgb': 768 value(s) NaN or infinite in the rows from 7 on"),
    ("official-one-class", lambda t: official(t, **{"labels.npy": np.zeros(66, np.int64)}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "labels hold 1 class(es)"),
    ("official-stray-label", lambda t: official(t, **{"labels.npy": np.r_[np.repeat(np.arange(6), 11)[:-1], 50]}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "labels.npy holds label 50, but this data set has"),
    ("official-huge-label", lambda t: official(t, **{"labels.npy": np.r_[np.repeat(np.arange(6), 11)[:-1], 2**40]}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "labels.npy holds label 1099511627776"),
    ("official-complex", lambda t: official(t, **{"DEPTH_data_normalized.npy": np.ones((66, 1, 16, 16), np.complex64)}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "holds complex values (complex64)"),
    # prepared caches
    ("cache-truncated", lambda t: cache(t, **{"rgb.npy": "truncated"}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "rgb.npy is not a readable .npy array"),
    ("cache-manifest-corrupt", lambda t: cache(t, **{"manifest.json": "{not json"}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "manifest.json is unreadable or incomplete"),
    ("cache-no-labels", lambda t: cache(t, **{"labels.npy": "missing"}), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1"], "labels.npy is missing"),
    ("cache-other-image-size", lambda t: cache(t), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1", "--data-opt", "image_size=8"], "is a cache prepared with image_size=16, not image_size=8"),
    ("cache-other-norm-stats", lambda t: cache(t), ["train", "--method", "student", "--dataset", "sunrgbd", "--root", "{}", "--modality", "rgb", "--epochs", "1", "--data-opt", "norm_stats=train:0"], "prepared with norm_stats='all'"),
    # tables
    ("tables-corrupt-db", mlflow_db, ["tables", "--experiment", "X", "--tracking-uri", "sqlite:///{}", "--out", "{tmp}/t"], "is not a readable SQLite database"),
    ("tables-missing-db", lambda t: t / "none.db", ["tables", "--experiment", "X", "--tracking-uri", "sqlite:///{}", "--out", "{tmp}/t"], "none.db does not exist"),
    ("tables-unreachable-server", None, ["tables", "--experiment", "X", "--tracking-uri", "http://127.0.0.1:9", "--out", "{tmp}/t"], "cannot reach the MLflow tracking server"),
    ("tables-letters", None, ["tables", "--paper", "--tables", "a", "--out", "{tmp}/t"], "--tables takes table numbers 1-4"),
    ("tables-five", None, ["tables", "--paper", "--tables", "5", "--out", "{tmp}/t"], "--tables takes table numbers 1-4"),
    # bench: stores, folders, addresses (before anything is written)
    ("bench-no-driver", None, ["bench", "--profile", "smoke", "--out", "{tmp}/b", "--tracking-uri", "mssql+pyodbc://u:p@localhost/db"], "its database driver is not installed"),
    ("bench-corrupt-db", corrupt_db, ["bench", "--profile", "smoke", "--out", "{}"], "mlflow.db is not a readable SQLite database"),
    ("bench-out-is-file", a_file, ["bench", "--profile", "smoke", "--out", "{}"], "is a file"),
    ("bench-address-word", None, ["bench", "--profile", "smoke", "--out", "{tmp}/b", "--address", "foo"], "--address takes auto, HOST:PORT or ray://HOST:PORT"),
    ("bench-out-inside-bench", other_bench, ["bench", "--profile", "smoke", "--out", "{}/results"], "lies inside benchmark folder"),
    ("bench-out-inside-trial", trial_folder, ["bench", "--profile", "smoke", "--out", "{}"], "lies inside trial folder"),
    ("bench-out-empty", None, ["bench", "--profile", "smoke", "--out", ""], "--out is empty"),
    ("bench-other-config", other_bench, ["bench", "--profile", "smoke", "--out", "{}"], "holds benchmark 'smoke' with another config"),
    ("bench-cpus-beyond", None, ["bench", "--profile", "smoke", "--out", "{tmp}/b", "--set", "resources.cpus_per_trial=1000"], "a trial asks for 1000 CPU(s) and 0 GPU(s), but no node of this machine has that much"),
    *([("bench-cuda-no-gpu", None, ["bench", "--profile", "smoke", "--out", "{tmp}/b", "--set", "train.device='cuda'"], "this machine has no GPU")]
      if not torch.cuda.is_available() else []),
    ("bench-threads-beyond", None, ["bench", "--profile", "smoke", "--out", "{tmp}/b", "--set", "train.threads=100000"], "threads = 100000 is far beyond"),
    ("train-threads-beyond", None, [*STUDENT, "--threads", "100000"], "threads = 100000 is far beyond"),
    ("dry-run-cpus-zero", None, ["bench", "--profile", "smoke", "--dry-run", "--cpus", "0"], "--cpus must be positive, got 0"),
    ("dry-run-gpus-negative", None, ["bench", "--profile", "smoke", "--dry-run", "--gpus", "-1"], "--gpus must be 0 or more, got -1"),
    ("synthetic-noise-negative", None, [*STUDENT, "--data-opt", "noise=-1"], "synthetic: noise must lie in 0..100"),
    ("synthetic-seed-negative", None, [*STUDENT, "--data-opt", "seed=-1"], "synthetic: seed must lie in 0.."),
    ("synthetic-too-many-samples", None, [*STUDENT[:-4], "--data-opt", "n_samples=10000000000000"], "would take"),
    ("synthetic-root", lambda t: t, [*STUDENT, "--root", "{}"], "synthetic data are generated and read no files"),
    # predict
    ("predict-image-size", exported, ["predict", "--model", "{}", "--input", "{tmp}/x.npy"], "the model reads 16 x 16 depth images (as trained), the input is 24 x 24"),
    ("predict-no-sample", lambda t: exported_with(t, np.zeros((0, 1, 16, 16), np.float32)), ["predict", "--model", "{}", "--input", "{tmp}/x.npy"], "the input holds no sample"),
    ("predict-nan-input", lambda t: exported_with(t, np.full((2, 1, 16, 16), np.nan, np.float32)), ["predict", "--model", "{}", "--input", "{tmp}/x.npy"], "512 value(s) NaN or infinite (first in sample 0)"),
    ("predict-sidecar-no-modality", lambda t: exported_with(t, drop_modality=True), ["predict", "--model", "{}", "--input", "{tmp}/x.npy"], "is not a cmkd model sidecar"),
    ("predict-empty-input", exported_with, ["predict", "--model", "{}", "--input", "depth="], "--input 'depth=' names no file"),
    ("predict-output-folder", exported_with, ["predict", "--model", "{}", "--input", "{tmp}/x.npy", "--output", "{tmp}"], "is a folder; pass a file name"),
    ("predict-garbage-model", lambda t: exported(t, garbage=True), ["predict", "--model", "{}", "--input", "{tmp}/x.npy"], "is not a torch.export program"),
]


def _snapshot(tmp: Path) -> dict[str, int]:
    return {str(p.relative_to(tmp)): p.stat().st_size for p in tmp.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name, setup, args, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(name, setup, args, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written to a default location would land here
    target = setup(tmp_path) if setup else None
    args = [a.replace("{tmp}", str(tmp_path)).replace("{}", str(target)) for a in args]
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) if name == "seed-text" else _no_exit():
        code = main([*args, *(["--runs", str(tmp_path / "runs")] if args[0] == "train" else [])])
    captured = capsys.readouterr()
    if name == "seed-text":  # argparse's own exit, as one line
        code = 2
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("cmkd: error: "), captured.err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out and "epoch" not in captured.out
    assert _snapshot(tmp_path) == before, "a refused command left files behind"


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
