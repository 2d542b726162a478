"""cmkd bench with real Ray (one shared local instance) and a real MLflow SQLite store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import MlflowServer

from cmkd.errors import UserError
from cmkd.harness.cli.main import main
from cmkd.harness.sweep.bench_config import load_config
from cmkd.harness.sweep.plan import build_plan
from cmkd.harness.sweep.tune import resolve_device, run_bench
from cmkd.results.store import ResultsStore

pytestmark = pytest.mark.ray

# width 16: this run keeps and logs every model (checkpoint, export, MLflow copies of both)
SMALL = ["methods=['kdv1', 'mlkd', 'discomkd']", "ablations=['no-adv']", "log_checkpoints=true", "keep_weights='best'",
         "train.width=16"]


def _runs(uri: str, experiment: str):
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment])


def test_smoke_benchmark_one_run_and_one_result_per_trial_students_after_teachers(ray_session, tmp_path):
    cfg = load_config("smoke", overrides=SMALL)
    plan = build_plan(cfg)
    summary = run_bench(cfg, out=tmp_path / "b", say=lambda s: None)
    assert summary.finished == summary.planned == len(plan) and summary.failed == 0
    store = ResultsStore(tmp_path / "b" / "results")
    records = store.records()
    assert sorted(r.trial_id for r in records) == sorted(p.trial_id for p in plan)
    runs = _runs(summary.tracking_uri, summary.experiment)
    assert len(runs) == len(plan) and set(runs["status"]) == {"FINISHED"}
    assert sorted(runs["tags.trial_id"]) == sorted(p.trial_id for p in plan)
    assert {"metrics.val_f1/depth", "metrics.test_f1/depth", "metrics.best_val_f1/depth", "metrics.best_epoch/depth",
            "metrics.train/loss"} <= set(runs.columns)
    assert not any(c.startswith("metrics.val_f1_") for c in runs.columns)
    # the per-epoch series is a clean curve: one point per epoch, none at a summary step
    from mlflow.tracking import MlflowClient

    client = MlflowClient(summary.tracking_uri)
    student = runs[(runs["tags.method"] == "student") & (runs["tags.modality"] == "depth")].iloc[0]
    curve = client.get_metric_history(student.run_id, "val_f1/depth")
    assert [m.step for m in curve] == [1]  # smoke: one epoch
    # what produced the run: resolved options (defaults included), train config, data options, fingerprints
    dkd = runs[runs["tags.method"] == "mlkd"].iloc[0]
    assert dkd["params.method.t0"] == "4.0" and dkd["params.method.ce_weight"] == "0.1" and dkd["params.method.lskd"] in ("True", "False")
    assert dkd["params.spec.train.lr"] == "0.001" and dkd["params.spec.train.split_rule"] == "official"
    assert dkd["params.data.n_samples"] == "120" and len(dkd["params.spec.data_fingerprint"]) == 32
    assert len(dkd["params.resolved.split_fingerprint"]) == 16 and dkd["params.resolved.threads"] == "1"
    assert dkd["tags.mlflow.source.name"] == "cmkd" and dkd["tags.mlflow.user"]
    assert len(dkd["tags.mlflow.source.git.commit"]) == 40
    exp = client.get_experiment_by_name(summary.experiment)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    # no stage barrier: every distilled student started after its own teacher had ended (in MLflow and in the
    # workers' own clocks), and some started while stage 1 was still running
    by_trial = runs.set_index("tags.trial_id")
    rec = {r.trial_id: r for r in records}
    for p in plan:
        if p.teacher_id:
            assert by_trial.loc[p.trial_id, "start_time"] >= by_trial.loc[p.teacher_id, "end_time"], p.name
            assert rec[p.trial_id].started_at >= rec[p.teacher_id].ended_at, p.name
    stage1_over = max(rec[p.trial_id].ended_at for p in plan if p.stage == 1)
    early = [p.name for p in plan if p.stage == 2 and rec[p.trial_id].started_at < stage1_over]
    assert early, "every student waited for the whole of stage 1"
    # every slot gets a trial (a custom Tune searcher gets one pending trial at a time unless told the slots)
    spans = sorted((r.started_at, r.ended_at) for r in records)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), "trials never ran side by side"
    # artifacts: confusion matrices and DisCoM-KD's exported models
    disco = runs[(runs["tags.method"] == "discomkd") & (runs["tags.variant"] == "")].iloc[0]
    names = {a.path for a in client.list_artifacts(disco.run_id)} | {a.path for a in client.list_artifacts(disco.run_id, "models")}
    assert {"confusion_rgb.json", "result.json", "models/model_rgb.pt2"} <= names
    ckpts = {a.path for a in client.list_artifacts(disco.run_id, "checkpoints")}
    assert ckpts == {"checkpoints/best_rgb.pt", "checkpoints/best_depth.pt"}
    # disk: no finished trial keeps its resume checkpoint; keep_weights = "best" with one seed keeps every cell's
    # weights (each is its cell's best), listed in models.csv; no sidecar without its program
    runs_dir = tmp_path / "b" / "runs" / "synthetic"
    assert not list(runs_dir.glob("*/*/checkpoint.pt"))
    import pandas as pd

    models = pd.read_csv(tmp_path / "b" / "models.csv")
    outputs = sum(len(r.outputs) for r in records)
    assert len(models) == outputs == len(list(runs_dir.glob("*/*/best_*.pt")))
    assert set(models[models.why == "teacher"].method) == {"student", "teacher-mm"}
    for sidecar in runs_dir.glob("*/*/model_*.json"):
        assert sidecar.with_suffix(".pt2").is_file(), sidecar
    # a kept benchmark trial exports on its own later (a KD student here)
    kd = models[(models.method == "kdv1") & (models.scenario == "cross-modal")].iloc[0]
    assert main(["export", kd.folder, "--out", str(tmp_path / "deploy")]) == 0
    assert (tmp_path / "deploy" / "model_depth.pt2").is_file() and (tmp_path / "deploy" / "model_depth.json").is_file()
    # analysis-ready rows: LSKD and ablation apart, the resolved options, one type per column; the per-epoch history
    df = pd.read_parquet(tmp_path / "b" / "results.parquet")
    assert {"lskd", "ablation", "variant", "opt.temperature", "opt.lskd", "opt.ablation"} <= set(df.columns)
    kdv1 = df[df.method == "kdv1"]
    assert set(kdv1.lskd) == {False, True} and set(kdv1.ablation) == {""} and set(kdv1["opt.temperature"]) == {4.0}
    assert df[df.method == "student"].lskd.isna().all()  # no LSKD switch: missing, not False
    assert set(df[df.scenario == "ablation"].ablation) == {"no-adv"}
    hist = pd.read_parquet(tmp_path / "b" / "history.parquet")
    assert list(hist.columns[:14]) == ["trial_id", "dataset", "entry", "scenario", "method", "variant", "lskd", "ablation",
                                       "seed", "output", "epoch", "seconds", "val_f1", "loss"]
    assert len(hist) == outputs  # smoke: one epoch per trial and output
    joined = hist.merge(df, left_on=["trial_id", "output"], right_on=["trial_id", "modality"])
    assert (joined.val_f1_x.round(12) == joined.val_f1_y.round(12)).all()  # one epoch: its val F1 is the best
    assert "loss.kd" in hist.columns and hist[hist.method == "kdv1"]["loss.kd"].notna().all()
    assert not (tmp_path / "b" / "tables" / "results.parquet").exists()  # written once, at the benchmark's root


def test_a_raising_trial_is_retried_then_failed_and_its_students_skipped(ray_session, tmp_path):
    cfg = load_config("smoke", overrides=["methods=['kdv1']", "lskd=[false]", "scenarios=['cross-modal', 'multi-modal']",
                                          "ablations=[]", "max_failures=1"])
    summary = run_bench(cfg, out=tmp_path / "b", say=lambda s: None, inject_failure="teacher-mm")
    store = ResultsStore(tmp_path / "b" / "results")
    recs = {r.name: r.to_dict() for r in store.records()}
    failed = recs["synthetic-teacher-mm-s0"]
    assert failed["status"] == "failed" and failed["attempts"] == 2 and "injected failure" in failed["error"]
    skipped = [r for r in recs.values() if r["status"] == "skipped"]
    assert {r["scenario"] for r in skipped} == {"multi-modal"} and all("teacher" in r["error"] for r in skipped)
    finished = [r for r in recs.values() if r["status"] == "finished"]
    assert {r["method"] for r in finished} == {"student", "kdv1"} and summary.finished == len(finished)
    runs = _runs(summary.tracking_uri, summary.experiment)
    assert set(runs[runs["tags.method"] == "teacher-mm"]["status"]) == {"FAILED"}


USER_ERROR_PLUGIN = """
from cmkd.errors import UserError
from cmkd.methods.registry import register_method
from cmkd.methods.kd import KDv1


@register_method("refuses-data")
class RefusesData(KDv1):
    # a distilled student that refuses its training split: bad input, the same on every attempt

    def on_train_split(self, labels):
        raise UserError("refuses-data: this split is refused (a user error)")
"""


def test_a_trial_failing_with_a_user_error_is_not_retried(ray_session, tmp_path):
    """Bad input fails every attempt the same way: the trial is recorded as failed after one attempt, with
    its one-line error, and Tune spends no retry on it (before: max_failures retries, each logged)."""
    from cmkd.methods import METHODS

    plugin = tmp_path / "refuses.py"
    plugin.write_text(USER_ERROR_PLUGIN)
    cfg = load_config("smoke", overrides=["methods=['refuses-data']", "scenarios=['cross-modal']", "ablations=[]",
                                          "max_failures=2", f"plugins=['{plugin}']"])
    lines = []
    try:
        summary = run_bench(cfg, out=tmp_path / "b", say=lines.append)
    finally:
        METHODS.unregister("refuses-data")
    recs = [r for r in ResultsStore(tmp_path / "b" / "results").records() if r.method == "refuses-data"]
    assert recs and all(r.status == "failed" and r.attempts == 1 for r in recs), [(r.status, r.attempts) for r in recs]
    assert all(r.error == "UserError: refuses-data: this split is refused (a user error)" for r in recs)
    assert summary.failed == len(recs) and summary.finished == summary.planned - len(recs)
    assert any("FAILED" in line and "not retried: bad input" in line for line in lines), lines


def _bench_cmd(out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "cmkd", "bench", "--profile", "smoke", "--out", str(out), "--address", "auto", *extra]


def test_killed_driver_resumes_every_trial_exactly_once(ray_session, tmp_path):
    out = tmp_path / "b"
    extra = ["--set", "methods=['kdv1', 'discomkd']", "--set", "lskd=[false]", "--set", "ablations=['no-adv']",
             "--set", "train.epochs=4", "--set", "scenarios=['cross-modal', 'ablation']",
             "--set", "train.checkpoint_every=1"]  # tiny trials: the time budget alone would write none
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen(_bench_cmd(out, extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    snapshot: dict[str, int] = {}
    while time.time() < deadline and proc.poll() is None:
        store_dir = out / "results"
        finished = list(store_dir.glob("*.json")) if store_dir.exists() else []
        ckpts = {}
        import torch

        for ck in (out / "runs").glob("*/*/*/checkpoint.pt") if (out / "runs").exists() else []:
            try:
                ckpts[ck.parent.name.split("-")[-1]] = torch.load(ck, weights_only=False)["state"]["epoch"]
            except Exception:
                continue
        if finished and any(0 < e < 4 for tid, e in ckpts.items() if not (store_dir / f"{tid}.json").exists()):
            snapshot = ckpts
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the benchmark ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)
    store = ResultsStore(out / "results")
    before = {r.trial_id: r.written_at for r in store.records() if r.status == "finished"}
    interrupted = {tid: e for tid, e in snapshot.items() if tid not in before and 0 < e < 4}
    assert interrupted, "no trial was caught mid-training"

    again = subprocess.run(_bench_cmd(out, extra), capture_output=True, text=True, env=env, timeout=400)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    # the terminal (a pipe here: plain lines) shows cmkd's view; Ray's and Tune's messages are in the log file
    for noise in ("Connecting to existing Ray cluster", "TensorBoard", "Configuration for experiment", "INFO"):
        assert noise not in again.stdout + again.stderr, noise
    assert "Connecting to existing Ray cluster" in (out / "logs" / "driver.log").read_text()
    assert "trials planned" in again.stdout and "done," in again.stdout and "ETA" in again.stdout
    cfg = load_config("smoke", overrides=[e for e in extra if e != "--set"])
    plan = build_plan(cfg)
    records = {r.trial_id: r.to_dict() for r in store.records()}
    assert sorted(records) == sorted(p.trial_id for p in plan)
    assert all(r["status"] == "finished" for r in records.values())
    for tid, stamp in before.items():  # finished before the kill: not run again
        assert records[tid]["written_at"] == stamp
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    for tid, epoch in interrupted.items():  # caught mid-way: never trained from zero again
        rec = records[tid]
        if rec["resumed_from"]:  # resumed from its checkpoint
            assert rec["resumed_from"][0] >= epoch, rec
        else:  # or the killed driver's worker outlived it (Ray reaps a dead driver's actors asynchronously) and
            # finished the trial before the rerun reached it: the rerun took that result, trained nothing
            steps = [m.step for m in client.get_metric_history(rec["mlflow_run_id"], "train/loss")]
            assert sorted(steps) == [1, 2, 3, 4], (rec, steps)  # every epoch trained once
    runs = _runs(f"sqlite:///{out / 'mlflow.db'}", f"cmkd-smoke-{cfg.config_hash()}")
    assert len(runs) == len(plan) and runs["tags.trial_id"].is_unique and set(runs["status"]) == {"FINISHED"}


def test_runs_reach_a_real_mlflow_server(ray_session, tmp_path):
    with MlflowServer(tmp_path) as server:
        uri = server.uri
        cfg = load_config("smoke", overrides=["methods=['kdv1']", "lskd=[false]", "scenarios=['cross-modal']",
                                              "ablations=[]"])
        summary = run_bench(cfg, out=tmp_path / "b", tracking_uri=uri, say=lambda s: None)
        assert summary.finished == 3
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(summary.experiment)
        runs = client.search_runs([exp.experiment_id])
        assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
        assert {r.data.tags["method"] for r in runs} == {"student", "kdv1"}
        assert not (tmp_path / "b" / "mlflow.db").exists()
        # the tables rebuild from the server's experiment
        assert main(["tables", "--experiment", summary.experiment, "--tracking-uri", uri, "--out",
                     str(tmp_path / "t"), "--tables", "1"]) == 0
        assert "KDv1" in (tmp_path / "t" / "tables.md").read_text()


def test_bench_bad_input(capsys, tmp_path):
    def err(args):
        code = main(["bench", *args])
        text = capsys.readouterr().err
        assert code == 2 and len(text.strip().splitlines()) == 1, text
        return text

    assert "did you mean 'quick'" in err(["--profile", "quik", "--dry-run"])
    assert "unknown config key 'seed'" in err(["--profile", "smoke", "--set", "seed=[0]", "--dry-run"])
    assert "did you mean 'dkd'" in err(["--profile", "smoke", "--set", "methods=['dkdd']", "--dry-run"])
    assert "unknown data set 'sunrgb'" in err(["--profile", "smoke", "--set", "datasets=[{name='sunrgb'}]", "--dry-run"])
    missing = err(["--profile", "smoke", "--set", f"datasets=[{{name='eurosat-ms-sar', root='{tmp_path / 'none'}'}}]", "--dry-run"])
    assert "cmkd prepare eurosat-ms-sar" in missing
    assert "cannot reach the Ray cluster" in err(["--profile", "smoke", "--address", "127.0.0.1:9", "--out", str(tmp_path / "x")])
    assert "cannot reach the MLflow tracking server" in err(["--profile", "smoke", "--tracking-uri", "http://127.0.0.1:9",
                                                            "--out", str(tmp_path / "y")])
    assert "unknown resources key 'gpu'" in err(["--profile", "smoke", "--set", "resources.gpu=1", "--dry-run"])


def test_gpu_fraction_without_gpus_is_refused_unless_asked():
    cfg = load_config("smoke", overrides=["resources.gpus_per_trial=0.25"])
    with pytest.raises(UserError, match="no GPU is visible; pass --cpu-fallback"):
        resolve_device(cfg, 0)
    cpu = resolve_device(load_config("smoke", overrides=["resources.gpus_per_trial=0.25", "cpu_fallback=true"]), 0)
    assert cpu.resources.gpus_per_trial == 0 and cpu.train.device == "cpu"
    assert resolve_device(cfg, 1).resources.gpus_per_trial == 0.25


def test_changed_config_is_a_new_benchmark(tmp_path):
    from cmkd.harness.sweep.tune import claim_bench

    claim_bench(tmp_path, load_config("smoke"))
    claim_bench(tmp_path, load_config("smoke", overrides=["max_failures=3"]))  # not a numbers change
    with pytest.raises(UserError, match="another config"):
        claim_bench(tmp_path, load_config("smoke", overrides=["train.epochs=2"]))


def test_dry_run_prints_the_plan(capsys):
    assert main(["bench", "--profile", "smoke", "--dry-run", "--set", "per_image_ms=2.0"]) == 0
    out = capsys.readouterr().out
    assert "stage 1" in out and "stage 2 (distilled students): 30 trials" in out and "total: 40 trials, 40 trial-epochs" in out
    import re

    assert re.search(r"^time: [0-9:]+ wall-clock on \d+ slot\(s\) \(\d+ CPUs here / 1 per trial\)", out, re.M), out
    assert "CPU-hours" not in out  # no wall time of timed steps dressed up as CPU-hours


def test_paper_dry_run_plans_from_declared_sizes_without_data(capsys, tmp_path, monkeypatch):
    """The planning step the README shows: the paper profile with no data on disk gives counts, trial-epochs and
    a wall-clock time for the slots asked for, from a stated per-image cost, with its assumptions."""
    monkeypatch.setenv("CMKD_DATA", str(tmp_path / "no-data-here"))
    assert main(["bench", "--profile", "paper", "--dry-run", "--gpus", "8", "--set", "per_image_ms=1.0"]) == 0
    out = capsys.readouterr().out
    assert "stage 1 (no teacher: reference and standalone methods): 150 trials" in out
    assert "stage 2 (distilled students): 450 trials" in out and "total: 600 trials, 180000 trial-epochs" in out
    time_line = next(line for line in out.splitlines() if line.startswith("time: "))
    assert "on 8 slot(s) (8 GPU(s) / 1 GPU per trial)" in time_line and "GPU-hours" in time_line
    assumes = next(line for line in out.splitlines() if line.startswith("assumes: "))
    for part in ("sunrgbd: 1474 training images (declared 2105 samples, data not on disk)",
                 "eurosat-ms-sar: 18900 training images (declared 27000 samples", "tristar: 9941 training images",
                 "stated 1 ms at 224x224"):
        assert part in assumes
    # the estimate is the list schedule of those durations: 8 GPUs finish in about an eighth of the trial-hours
    import re

    wall = time_line.split(" wall-clock")[0][len("time: "):]
    h, m, s = (int(v) for v in wall.split(":"))
    trial_h = float(re.search(r"; ([0-9.]+) trial-hours", time_line).group(1))
    assert trial_h / 8 <= h + m / 60 + s / 3600 <= trial_h / 8 * 1.3
    # one GPU: everything in sequence
    assert main(["bench", "--profile", "paper", "--dry-run", "--gpus", "1", "--set", "per_image_ms=1.0"]) == 0
    one = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("time: "))
    assert "days wall-clock on 1 slot(s)" in one and f"{trial_h:.2f} trial-hours" in one
    # --gpus outside a dry run is refused in one line
    assert main(["bench", "--profile", "smoke", "--gpus", "2", "--out", str(tmp_path / "b")]) == 2
    assert "--cpus and --gpus size a --dry-run" in capsys.readouterr().err and not (tmp_path / "b").exists()
