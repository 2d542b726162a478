"""Real drivers, real signals: one driver per benchmark folder; Ctrl-C / SIGTERM keep what finished,
start nothing new, say so and exit 130 / 143; the same command resumes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cmkd.harness.sweep.bench_config import load_config
from cmkd.harness.sweep.plan import build_plan
from cmkd.results.store import ResultsStore

pytestmark = pytest.mark.ray

SETS = ["methods=['kdv1']", "lskd=[false]", "ablations=[]", "train.epochs=3",
        "scenarios=['cross-modal', 'multi-modal']"]
EXTRA = [a for s in SETS for a in ("--set", s)]


def driver(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cmkd", "bench", "--profile", "smoke", "--out", str(out),
                             "--address", "auto", *EXTRA], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        assert proc.poll() is None, "the benchmark ended before the test could act: " + proc.stderr.read()[-2000:]
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def records(out: Path) -> dict[str, dict]:
    folder = out / "results"
    return {r.trial_id: r.to_dict() for r in ResultsStore(folder).records()} if folder.is_dir() else {}


def test_second_driver_refused_then_sigint_keeps_what_finished_and_resumes(ray_session, tmp_path):
    out = tmp_path / "b"
    plan = build_plan(load_config("smoke", overrides=SETS))
    stage1 = {p.trial_id for p in plan if p.stage == 1}
    first = driver(out)
    # a stage-1 trial has finished and the stage is still running
    wait_for(lambda: 1 <= len(records(out)) < len(stage1), first)

    bench_json = (out / "bench.json").stat().st_mtime_ns
    second = subprocess.run([sys.executable, "-m", "cmkd", "bench", "--profile", "smoke", "--out", str(out),
                             "--address", "auto", *EXTRA], capture_output=True, text=True, timeout=120)
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2, second.stderr[-2000:]
    assert len(lines) == 1 and f"is in use by another cmkd bench (PID {first.pid} on {socket.gethostname()}" in lines[0]
    assert (out / "bench.json").stat().st_mtime_ns == bench_json

    sent = time.time()
    first.send_signal(signal.SIGINT)
    stdout, stderr = first.communicate(timeout=180)
    assert first.returncode == 130, stdout[-2000:] + stderr[-2000:]
    finished = {t for t, r in records(out).items() if r["status"] == "finished"}
    assert f"interrupted: {len(finished)}/{len(plan)} trials finished" in stderr and "run the same command to resume" in stderr
    assert "benchmark finished" not in stdout
    assert finished and _nothing_started_after(sent, records(out))
    teachers = {p.trial_id: p.teacher_id for p in plan}
    assert all(teachers[t] in finished for t in finished if teachers[t])  # a student only after its teacher
    assert all(r["status"] == "finished" for r in records(out).values()), "an interrupted trial was recorded as failed or skipped"
    stamps = {t: records(out)[t]["written_at"] for t in finished}
    page = (out / "report.html").read_text()  # the report of what finished, saying what is missing
    assert f"{len(plan) - len(finished)} planned trial(s) never ran or did not finish (the run was interrupted)" in page
    assert "the last run was interrupted" in page

    again = driver(out)
    stdout, stderr = again.communicate(timeout=400)
    assert again.returncode == 0, stdout[-2000:] + stderr[-2000:]
    final = records(out)
    assert sorted(final) == sorted(p.trial_id for p in plan) and all(r["status"] == "finished" for r in final.values())
    assert all(final[t]["written_at"] == s for t, s in stamps.items())  # nothing finished was rerun
    page = (out / "report.html").read_text()
    assert 'id="missing-none"' in page and "(2 invocations)" in page
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=[f"cmkd-smoke-{load_config('smoke', overrides=SETS).config_hash()}"])
    assert len(runs) == len(plan) and runs["tags.trial_id"].is_unique and set(runs["status"]) == {"FINISHED"}


def _nothing_started_after(sent: float, recs: dict[str, dict], slack: float = 2.0) -> bool:
    """No finished trial started after the signal (``slack``: the sweep's loop acting on it)."""
    return all(r["started_at"] <= sent + slack for r in recs.values() if r["status"] == "finished")


def test_sigterm_while_students_run_exits_143_and_starts_nothing_new(ray_session, tmp_path):
    out = tmp_path / "b"
    proc = driver(out)
    wait_for(lambda: any((out / "runs").glob("synthetic/kdv1-*/*/spec.json")), proc)  # a student is training
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 143, stdout[-2000:] + stderr[-2000:]
    assert "interrupted:" in stderr and "run the same command to resume" in stderr
    assert all(r["status"] == "finished" for r in records(out).values())
    assert _nothing_started_after(sent, records(out))
    assert not (out / ".lock").exists() or _unlocked(out / ".lock")


def _unlocked(path: Path) -> bool:
    import fcntl

    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
