"""A number belongs to the data content, split and config that produced it (issue "never silently wrong")."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest

from cmkd.errors import UserError
from cmkd.harness.cli.main import build_parser, main, spec_from_args
from cmkd.harness.engine.spec import TrainConfig, TrialSpec
from cmkd.harness.engine.teachers import teacher_spec, train_command
from cmkd.harness.engine.trial import run_trial
from cmkd.methods import DataInfo


def arrays(root: Path, seed: int, labels: np.ndarray | None = None) -> Path:
    """Official-code arrays: same labels and shapes for every seed, other pixels."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    np.save(root / "RGB_data_normalized.npy", rng.random((66, 3, 16, 16), dtype=np.float32))
    np.save(root / "DEPTH_data_normalized.npy", rng.random((66, 1, 16, 16), dtype=np.float32))
    np.save(root / "labels.npy", np.repeat(np.arange(6), 11) if labels is None else labels)
    return root


def spec(root: Path, method: str = "student", modality: str = "rgb", **kw) -> TrialSpec:
    return TrialSpec(dataset="official-arrays", method=method, modality=modality, data_root=str(root),
                     dataset_options={"prefixes": "RGB,DEPTH"}, train=TrainConfig(epochs=1, batch_size=16, threads=1), **kw)


def test_a_teacher_trained_on_other_pixels_is_not_a_students_teacher(tmp_path):
    a, b = arrays(tmp_path / "A", 0), arrays(tmp_path / "B", 1)
    runs = tmp_path / "runs"
    teacher = run_trial(spec(a), runs_root=runs)
    with pytest.raises(UserError) as err:
        run_trial(spec(b, "kdv1", "depth", scenario="cross-modal"), runs_root=runs)
    message = str(err.value)
    assert "no finished cross-modal teacher" in message and "differs in data content" in message
    assert teacher.data_fingerprint in message
    # on the teacher's own data the student runs
    assert run_trial(spec(a, "kdv1", "depth", scenario="cross-modal"), runs_root=runs).teacher == teacher.out_dir


def test_the_same_command_on_other_data_is_another_trial_not_the_old_result(tmp_path, capsys):
    a, b = arrays(tmp_path / "A", 0), arrays(tmp_path / "B", 0, labels=np.random.default_rng(5).permutation(np.repeat(np.arange(6), 11)))
    runs = str(tmp_path / "runs")
    cmd = ["train", "--method", "student", "--dataset", "official-arrays", "--data-opt", "prefixes=RGB,DEPTH",
           "--modality", "rgb", "--epochs", "1", "--batch-size", "16", "--runs", runs, "--quiet"]
    assert main([*cmd, "--root", str(a)]) == 0
    first = capsys.readouterr().out
    assert main([*cmd, "--root", str(a)]) == 0
    assert "already finished" in capsys.readouterr().out
    assert main([*cmd, "--root", str(b)]) == 0  # permuted labels: other content, trained anew
    third = capsys.readouterr().out
    assert "already finished" not in third and first.split("trial ")[-1] != third.split("trial ")[-1]
    # a fixed --out that holds the other data's run is refused, naming what differs
    out = str(tmp_path / "fixed")
    assert main([*cmd, "--root", str(a), "--out", out]) == 0
    capsys.readouterr()
    assert main([*cmd, "--root", str(b), "--out", out]) == 2
    assert "holds another run" in (err := capsys.readouterr().err) and "data content" in err


def test_a_trial_planned_on_some_content_refuses_other_content(tmp_path):
    a = arrays(tmp_path / "A", 0)
    planned = spec(a).replace(data_fingerprint="0" * 32)
    with pytest.raises(UserError, match="have other content .* than this trial was planned on"):
        run_trial(planned, runs_root=tmp_path / "runs")


def test_a_finished_result_is_reused_only_when_it_matches(tmp_path):
    a = arrays(tmp_path / "A", 0)
    res = run_trial(spec(a), out_dir=tmp_path / "t")
    import json

    record = json.loads((tmp_path / "t" / "result.json").read_text())
    record["split_fingerprint"] = "other"
    (tmp_path / "t" / "result.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"does not match this trial: split \(other -> "):
        run_trial(spec(a), out_dir=tmp_path / "t")
    assert res.threads == 1 and res.data_options == {}


def test_content_hash_of_a_cache_is_kept_beside_it_and_follows_the_files(tmp_path):
    from cmkd.datasets.cache import CONTENT_FILE, read_cache, write_cache
    from cmkd.datasets.official import read_official

    d = read_official(arrays(tmp_path / "A", 0), {"RGB": "rgb", "DEPTH": "depth"}, "sunrgbd", "rgb")
    root = write_cache(tmp_path / "cache", d, {"options": {}})
    first = read_cache(root).fingerprint()
    assert (root / CONTENT_FILE).is_file() and first == d.fingerprint()
    assert read_cache(root).meta["content_hash"] == first  # read back, not rehashed
    rgb = np.load(root / "rgb.npy")
    rgb[0, 0, 0, 0] += 1
    np.save(root / "rgb.npy", rgb)  # the same strided checksum, other content
    assert read_cache(root).fingerprint() != first


# ---- the printed teacher command trains exactly the teacher the student looks for --------------------------
NON_DEFAULT = {"epochs": 7, "batch_size": 16, "lr": 0.003, "weight_decay": 0.01, "eval_batch_size": 64, "augment": False,
               "device": "cpu", "amp": True, "threads": 3, "split_rule": "exact", "conv1_init": "kaiming",
               "split": "published", "checkpoint_every": 3, "checkpoint_budget": 0.2, "channels_last": True,
               "compile": True, "width": 16, "bn_momentum": 0.1, "precision": "float64"}


def test_every_train_option_has_a_non_default_value_here():
    from dataclasses import fields

    assert {f.name for f in fields(TrainConfig)} == set(NON_DEFAULT)
    assert all(getattr(TrainConfig(), k) != v for k, v in NON_DEFAULT.items())


@pytest.mark.parametrize("key", list(NON_DEFAULT))
def test_printed_teacher_command_round_trips_to_the_same_teacher(key):
    info = DataInfo("synthetic", {"rgb": 3, "depth": 1}, {"rgb": (16, 16), "depth": (16, 16)}, 6, "rgb")
    student = TrialSpec(dataset="synthetic", method="kdv1", modality="depth", scenario="cross-modal", seed=2,
                        dataset_options={"n_samples": 132, "image_size": 16}, data_root="/data/x y",
                        train=TrainConfig(**{key: NON_DEFAULT[key]}))
    for kind in ("cross-modal", "multi-modal"):
        tspec = teacher_spec(student, kind, info)
        command = train_command(tspec, "/runs dir")
        args = build_parser().parse_args(shlex.split(command)[1:])
        parsed = spec_from_args(args)
        assert parsed.trial_id() == tspec.replace(data_fingerprint="").trial_id(), command
        assert args.runs == "/runs dir"


def test_a_train_field_added_later_moves_no_id_at_its_default():
    """train.width came after trials were recorded: at its default (64, the paper's ResNet-18) a trial id and a
    benchmark's config hash are what they were (this id was computed by the code before the field existed);
    another width is another trial."""
    from cmkd.harness.sweep.bench_config import load_config

    spec = TrialSpec(dataset="synthetic", method="student", modality="rgb", seed=0,
                     dataset_options={"n_samples": 120, "image_size": 16},
                     train=TrainConfig(epochs=2, batch_size=32, threads=1))
    assert spec.trial_id() == "844ee7109266"
    assert spec.replace(data_fingerprint="0123456789abcdef0123456789abcdef").trial_id() == "1178d0d9e336"
    assert spec.replace(train=TrainConfig(epochs=2, batch_size=32, threads=1, width=16)).trial_id() != "844ee7109266"
    assert load_config("smoke").config_hash() == "f42d1fdf80"  # the smoke benchmark's, before the field
