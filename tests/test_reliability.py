"""A damaged file never blocks a resume, a diverged run is an outcome, weights are tied to their record.

Each fault is made for real: a file cut short on disk, a checkpoint of another trial, weights swapped
for another file's, a loss that overflows. What must hold: the file is named in one warning line and
set aside (never deleted), the trial is redone from its last good state, and nothing finished is lost
or counted twice.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import tiny_spec

from cmkd.errors import UserError
from cmkd.harness.engine.corrupt import CORRUPT_DIR
from cmkd.harness.engine.folders import CHECKPOINT_FILE, RESULT_FILE, is_finished
from cmkd.harness.engine.trial import run_trial
from cmkd.results.record import ResultRecord
from cmkd.results.store import ResultsStore


def _truncate(path: Path, keep: int = 40) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _aside(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / CORRUPT_DIR).iterdir()) if (folder / CORRUPT_DIR).is_dir() else []


def test_a_corrupt_record_is_set_aside_named_and_its_trial_counts_as_not_run(tmp_path, capsys):
    store = ResultsStore(tmp_path / "results")
    store.put(ResultRecord(trial_id="aaaa", status="finished"))
    store.put(ResultRecord(trial_id="bbbb", status="finished"))
    _truncate(store.path("bbbb"))
    (tmp_path / "results" / "cccc.json").write_text('["a list, not a record"]')
    assert [r.trial_id for r in store.records()] == ["aaaa"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("cmkd: warning: ") and "set aside to" in line for line in err)
    assert "bbbb.json is corrupt (JSONDecodeError" in err[0] and "a rerun redoes it" in err[0]
    aside = _aside(tmp_path / "results")
    assert len(aside) == 4 and sum(n.endswith(".reason") for n in aside) == 2  # the file and why, never deleted
    assert store.get("bbbb") is None and store.status("bbbb") is None
    store.put(ResultRecord(trial_id="bbbb", status="finished"))  # the rerun files its record again
    assert sorted(r.trial_id for r in store.records()) == ["aaaa", "bbbb"]


def test_a_corrupt_checkpoint_or_result_is_set_aside_and_the_trial_trains_again(tmp_path, capsys):
    folder = tmp_path / "t"
    first = run_trial(tiny_spec(epochs=2), out_dir=folder)
    f1 = first.outputs["rgb"]["test_f1"]
    # the result cut short (a full disk): the trial is no longer finished and trains again, to the same numbers
    _truncate(folder / RESULT_FILE)
    assert not is_finished(folder)
    (folder / CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 cut short")  # and its checkpoint is garbage
    stale = folder / ".checkpoint.pt.x1y2.tmp"  # a writer SIGKILLed mid-write
    stale.write_bytes(b"half")
    unrenamed = folder / ".model_rgb.new.pt2"  # an export killed between its two renames
    unrenamed.write_bytes(b"whole but never renamed")
    again = run_trial(tiny_spec(epochs=2), out_dir=folder)
    assert not again.reused and again.resumed_from == [] and again.outputs["rgb"]["test_f1"] == f1
    assert not stale.exists() and not unrenamed.exists()
    aside = _aside(folder)
    assert [n for n in aside if not n.endswith(".reason")] == sorted(n for n in aside if n.startswith(("result.json.", "checkpoint.pt."))
                                                                     and not n.endswith(".reason"))
    assert len(aside) == 4
    err = capsys.readouterr().err
    assert "result.json is corrupt" in err and "checkpoint.pt is corrupt" in err and "starts again from epoch 1" in err
    assert run_trial(tiny_spec(epochs=2), out_dir=folder).reused


def test_a_checkpoint_of_another_trial_is_never_resumed(tmp_path, capsys):
    from cmkd.harness.engine.trial import Engine, prepare

    spec_a, spec_b = tiny_spec(epochs=2), tiny_spec(epochs=2, seed=1)
    engine = Engine(prepare(spec_a, tmp_path / "a"))  # a checkpoint as an interrupted run of trial a leaves it
    b = tmp_path / "b"
    b.mkdir()
    torch.save({"trial_id": engine.spec.trial_id(), "method": engine.method.state_dict(),
                "optimizer": engine.optimizer.state_dict(), "best_weights": {},
                "state": {"epoch": 1, "best": {}, "history": [], "train_time": 0.0, "images": 0, "wall": 0.0,
                          "resumed_from": []}}, b / CHECKPOINT_FILE)
    result = run_trial(spec_b, out_dir=b)  # b's folder holds a's checkpoint: set aside, b trains from epoch 1
    assert result.resumed_from == [] and result.epochs_run == 2 and len(result.history) == 2
    assert f"belongs to trial {engine.spec.trial_id()}, not {result.trial_id}" in capsys.readouterr().err


def _teacher_and_student(root: Path):
    from cmkd.methods import teacher_method

    teacher = run_trial(tiny_spec(method=teacher_method("cross-modal").name, modality="rgb"), runs_root=root)
    student = tiny_spec(method="kdv1", modality="depth", scenario="cross-modal")
    return Path(teacher.out_dir), student


def test_swapped_teacher_weights_are_refused_and_unreadable_ones_retrain_the_teacher(tmp_path):
    folder, student = _teacher_and_student(tmp_path)
    weights = folder / "best_rgb.pt"
    assert json.loads((folder / RESULT_FILE).read_text())["weights_sha256"]["best_rgb.pt"]
    good = weights.read_bytes()
    state = torch.load(weights, weights_only=True)
    state = {k: (v + 0.01 if v.is_floating_point() else v) for k, v in state.items()}  # other weights that still fit
    torch.save(state, weights)
    with pytest.raises(UserError, match=r"best_rgb.pt changed since the trial finished \(hash [0-9a-f]{16}, recorded "
                                        r"[0-9a-f]{16}\); restore that file, or retrain the teacher: cmkd train"):
        run_trial(student, runs_root=tmp_path)
    weights.write_bytes(good)  # restored: the student trains
    assert run_trial(student, runs_root=tmp_path).outputs["depth"]["test_f1"] >= 0
    # a damaged file of a result written before hashes were kept: set aside with the result, teacher retrained
    result = json.loads((folder / RESULT_FILE).read_text())
    del result["weights_sha256"]
    (folder / RESULT_FILE).write_text(json.dumps(result))
    _truncate(weights, 100)
    other = tiny_spec(method="kdv1", modality="depth", scenario="cross-modal", seed=0, method_options={"temperature": 2.0})
    with pytest.raises(UserError, match="best_rgb.pt do not load \\(set aside\\); retrain the teacher"):
        run_trial(other, runs_root=tmp_path)
    assert not is_finished(folder) and len(_aside(folder)) == 4


def test_export_checks_the_weights_and_never_writes_into_another_trials_folder(tmp_path):
    from cmkd.harness.engine.deploy import export_trial

    a = Path(run_trial(tiny_spec(), out_dir=tmp_path / "a", export=True).out_dir)
    b = Path(run_trial(tiny_spec(seed=1), out_dir=tmp_path / "b", export=True).out_dir)
    before = (b / "model_rgb.pt2").read_bytes()
    with pytest.raises(UserError, match=r"--out .*b is another trial's folder \(spec.json\)"):
        export_trial(a, out=b)
    assert (b / "model_rgb.pt2").read_bytes() == before
    deploy = tmp_path / "deploy"
    export_trial(b, out=deploy)
    with pytest.raises(UserError, match=r"holds trial .*'s export of output 'rgb' \(model_rgb.json\)"):
        export_trial(a, out=deploy)
    assert json.loads((deploy / "model_rgb.json").read_text())["trial_id"] == json.loads((b / RESULT_FILE).read_text())["trial_id"]
    export_trial(b, out=deploy)  # the same trial again: replaced as a pair
    torch.save({"x": torch.zeros(1)}, a / "best_rgb.pt")
    with pytest.raises(UserError, match="best_rgb.pt changed since the trial finished"):
        export_trial(a)
    _truncate(a / RESULT_FILE)
    with pytest.raises(UserError, match=r"result.json does not parse \(JSONDecodeError\)"):
        export_trial(a)


def test_a_non_finite_loss_ends_the_trial_as_diverged_recorded_and_never_retried(tmp_path):
    spec = tiny_spec(method="discomkd", modality=None, method_options={"w_cl": 1e39})  # float32 overflow: inf
    result = run_trial(spec, out_dir=tmp_path / "t")
    assert result.diverged["epoch"] == 1 and result.diverged["term"] == "loss" and result.diverged["value"] in ("nan", "inf")
    assert result.outputs == {} and result.epochs_run == 0
    assert json.loads((tmp_path / "t" / RESULT_FILE).read_text())["diverged"]["epoch"] == 1
    assert run_trial(spec, out_dir=tmp_path / "t").reused  # an outcome: the same command does not train it again
    rec = ResultRecord(trial_id="x").finished(result, 0.0, 1.0)
    assert rec.status == "diverged" and "not finite" in rec.error and "at epoch 1" in rec.error


def test_a_rising_loss_is_flagged_unless_the_method_ramps_its_loss_up(teachers):
    from cmkd.harness.engine.trial import loss_rose

    assert loss_rose([{"train/loss": 1.0}, {"train/loss": 0.5}, {"train/loss": 1.2}])
    assert not loss_rose([{"train/loss": 1.0}, {"train/loss": 1.0}]) and not loss_rose([{"train/loss": 1.0}])
    # DKD's first epoch weighs its DKD term 0 (the warm-up): its total loss rises by design, never flagged
    dkd = run_trial(tiny_spec(method="dkd", modality="depth", scenario="cross-modal",
                              method_options={"warmup_epochs": 1}), runs_root=teachers)  # weight 0, then 1
    losses = [h["train/loss"] for h in dkd.history]
    assert losses[-1] > losses[0] and dkd.loss_rose is False, losses


def test_cmkd_train_says_diverged_in_one_line_with_exit_1(tmp_path, capsys):
    from helpers import TINY_DATA

    from cmkd.harness.cli.main import main

    code = main(["train", "--method", "discomkd", "--dataset", "synthetic", "--data-opt", f"n_samples={TINY_DATA['n_samples']}",
                 "--data-opt", f"image_size={TINY_DATA['image_size']}", "--width", "16", "--epochs", "2",
                 "--opt", "w_cl=1e39", "--runs", str(tmp_path / "runs"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("cmkd: diverged: loss loss not finite") and "at epoch 1" in err[0]


def test_a_resumed_run_logs_each_epoch_to_mlflow_once(tmp_path):
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    from cmkd.harness.sweep.tracking import TrialTracker, setup_experiment

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = setup_experiment(uri, "e", tmp_path / "art", {})
    run_file = tmp_path / "trial" / "mlflow_run_id.txt"

    def report(epoch: int):
        return SimpleNamespace(epoch=epoch, losses={"loss": 1.0 / epoch}, val_f1={"rgb": 0.1 * epoch}, extra={},
                               seconds=1.0, images_per_s=10.0)

    first = TrialTracker(uri, exp, run_file, "t", {}, {})
    for e in (1, 2, 3):  # epochs 2 and 3 reached MLflow, then the driver was killed before a checkpoint at 3
        first.log_epoch(report(e))
    resumed = TrialTracker(uri, exp, run_file, "t", {}, {})
    assert resumed.run_id == first.run_id and resumed.logged_epoch == 3
    for e in (2, 3, 4):  # the resumed trial replays epochs 2-3 from its checkpoint at epoch 1
        resumed.log_epoch(report(e))
    steps = [m.step for m in MlflowClient(uri).get_metric_history(first.run_id, "val_f1/rgb")]
    assert sorted(steps) == [1, 2, 3, 4]
    # a trial finished again in the same run (its record lost, or retrained) keeps one row per summary metric
    folder = run_file.parent
    (folder / "result.json").write_text("{}")
    result = SimpleNamespace(outputs={"rgb": {"test_f1": 0.5, "val_f1": 0.4, "best_epoch": 2}}, costs={}, wall_time_s=3.0,
                             data_options={}, split_fingerprint="s", threads=1, out_dir=str(folder), device="cpu",
                             host="h", diverged=None, exports={})
    for _ in range(2):
        TrialTracker(uri, exp, run_file, "t", {}, {}).finish(result, folder, False)
    assert len(MlflowClient(uri).get_metric_history(first.run_id, "test_f1/rgb")) == 1


def test_data_checks_refuse_nan_single_class_and_complex_values_before_any_compute():
    import numpy as np

    from cmkd.datasets import MultiModalData

    x = np.zeros((30, 1, 8, 8), np.float32)
    labels = np.arange(30) % 3
    bad = x.copy()
    bad[17, 0, 2, 3] = np.nan
    with pytest.raises(UserError, match=r"modality 'rgb': 1 value\(s\) NaN or infinite in the rows from 17 on"):
        MultiModalData("d", {"rgb": bad}, labels, ["a", "b", "c"], "rgb").check_values(rows=8)
    with pytest.raises(UserError, match=r"its 30 labels hold 1 class\(es\) \(a\); classification needs two"):
        MultiModalData("d", {"rgb": x}, np.zeros(30), ["a", "b", "c"], "rgb").check_values()
    with pytest.raises(UserError, match="values of type complex64 \\(not real numbers\\)"):
        MultiModalData("d", {"rgb": x.astype(np.complex64)}, labels, ["a", "b", "c"], "rgb")
    MultiModalData("d", {"rgb": x}, labels, ["a", "b", "c"], "rgb").check_values()


def test_a_bench_resumes_past_a_damaged_record_and_teacher_and_keeps_a_diverged_trial(ray_session, tmp_path, capsys):
    """The benchmark, rerun after damage: a student's record cut short and its teacher's result cut short.
    Both are set aside and redone (the teacher first); the diverged DisCoM-KD is recorded once and not
    retried; every planned trial ends with exactly one record. A record of the same cell and seed under
    another trial id (made on earlier data) is moved to ``.superseded/``, out of the tables."""
    from cmkd.harness.engine.folders import trial_dir
    from cmkd.harness.sweep.bench_config import load_config
    from cmkd.harness.sweep.plan import build_plan
    from cmkd.harness.sweep.tune import run_bench

    cfg = load_config("smoke", overrides=["methods=['kdv1', 'discomkd']", "scenarios=['cross-modal']", "lskd=[false]",
                                          "ablations=[]", "method_options={discomkd={w_cl=1e39}}", "train.width=16"])
    plan = build_plan(cfg)
    out = tmp_path / "b"
    first = run_bench(cfg, out=out, say=lambda s: None)
    assert first.diverged == 1 and first.finished == len(plan) - 1 and first.failed == 0
    store = ResultsStore(out / "results")
    by_method = {r.method: r for r in store.records()}
    assert by_method["discomkd"].status == "diverged" and "not finite" in by_method["discomkd"].error
    student = next(p for p in plan if p.spec.method == "kdv1")
    teacher = next(p for p in plan if p.trial_id == student.teacher_id)
    _truncate(store.path(student.trial_id))
    _truncate(trial_dir(out / "runs", teacher.spec) / RESULT_FILE)
    earlier = json.loads(store.path(teacher.trial_id).read_text())
    earlier["trial_id"], earlier["spec"]["data_fingerprint"] = "0123456789ab", "earlier-data"
    store.path("0123456789ab").write_text(json.dumps(earlier))
    capsys.readouterr()
    lines: list[str] = []
    second = run_bench(cfg, out=out, say=lines.append)
    assert second.finished == len(plan) - 1 and second.diverged == 1 and second.failed == 0
    assert any(f"{len(plan)} trials planned, {len(plan) - 2} already finished" in line for line in lines), lines[:2]
    records = store.records()
    assert sorted(r.trial_id for r in records) == sorted(p.trial_id for p in plan)  # one record each
    assert {r.trial_id: r.attempts for r in records}[by_method["discomkd"].trial_id] == 1  # never retried
    err = capsys.readouterr().err
    assert err.count("cmkd: warning: ") == 4 and "the teacher trains again" in err
    assert "1 result records in" in err and (out / "results" / ".superseded" / "0123456789ab.json").is_file()
    assert len(_aside(out / "results")) == 4 and len(_aside(trial_dir(out / "runs", teacher.spec))) == 2
    from cmkd.results.report import write_all_tables

    tables = (write_all_tables(out, echo=lambda s: None) / "tables.md").read_text()
    assert "Diverged, left out of every mean (1 trial(s)): discomkd synthetic seed 0" in tables


def test_a_trial_that_fits_no_node_is_refused_naming_the_largest(tmp_path):
    from cmkd.harness.sweep.bench_config import load_config
    from cmkd.harness.sweep.tune import check_fit

    cfg = load_config("smoke", overrides=["resources.cpus_per_trial=4", "resources.gpus_per_trial=0.5"])
    nodes = [{"CPU": 16.0}, {"CPU": 2.0, "GPU": 1.0}]  # CPUs on one node, the GPU on another: no node fits both
    with pytest.raises(UserError, match=r"asks for 4 CPU\(s\) and 0.5 GPU\(s\), but no node of the cluster has that much "
                                        r"\(largest: 16 CPU\(s\), 1 GPU\(s\)\)"):
        check_fit(cfg, nodes, "the cluster")
    check_fit(cfg, [*nodes, {"CPU": 4.0, "GPU": 1.0}], "the cluster")


def test_a_damaged_bench_json_is_set_aside_only_when_every_record_is_this_configs(tmp_path, capsys):
    from cmkd.harness.sweep.bench_config import load_config
    from cmkd.harness.sweep.tune import claim_bench

    cfg = load_config("smoke")
    folder = tmp_path / "b"
    claim_bench(folder, cfg)
    ResultsStore(folder / "results").put(ResultRecord(trial_id="aaaa", status="finished", config_hash="another"))
    _truncate(folder / "bench.json", 10)
    with pytest.raises(UserError, match="does not parse .* holds records of another config; restore that file"):
        claim_bench(folder, cfg)
    (folder / "results" / "aaaa.json").unlink()
    ResultsStore(folder / "results").put(ResultRecord(trial_id="bbbb", status="finished", config_hash=cfg.config_hash()))
    claim_bench(folder, cfg)  # all records are this config's: the marker is set aside and written anew
    assert json.loads((folder / "bench.json").read_text())["config_hash"] == cfg.config_hash()
    assert "bench.json is corrupt" in capsys.readouterr().err and len(_aside(folder)) == 2


def test_address_auto_never_joins_another_benchmarks_private_ray(tmp_path):
    """A driver without --address starts a private instance; a second driver pointed at it is refused in one
    line instead of joining an instance that ends with the first benchmark."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, ray; from cmkd.harness.sweep.tune import init_ray; init_ray(None, {}); "
                               "print(ray.get_runtime_context().gcs_address, flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**__import__("os").environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        address = holder.stdout.readline().strip()
        assert ":" in address
        out = subprocess.run([sys.executable, "-m", "cmkd", "bench", "--profile", "smoke", "--out", str(tmp_path / "b"),
                              "--address", address], capture_output=True, text=True, timeout=180)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and lines[-1].startswith("cmkd: error: the Ray instance at --address"), out.stderr[-800:]
        assert "is another cmkd bench's own" in lines[-1] and not (tmp_path / "b" / "bench.json").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
