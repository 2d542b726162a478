"""Faults run for real on a small benchmark, each followed by the same command again; what was lost or
counted twice is counted, not assumed.

Each fault starts from a finished copy of one small benchmark (the smoke profile: KDv1, cross-modal,
3 epochs, checkpoint every epoch; 3 trials), applies the damage, reruns ``cmkd bench`` as a user would
(a subprocess), and reports: the rerun's exit code, the trials that end finished, the records per
planned trial (1 each: nothing lost, nothing doubled), the (run, metric, step) rows MLflow holds twice,
and the files set aside to ``.corrupt/``.

    python benchmarks/fault_runs.py [--out /tmp/cmkd-faults]

Faults: a results record cut short; a teacher's result.json cut short (with its student's record, so
that the student must load it again); the driver SIGKILLed mid-run (a trial between checkpoints; then `ray stop --force`, which stops every
Ray instance on the machine, as a user would after a killed driver); a
teacher's weights swapped for other weights that fit (the student must refuse them, then train once
they are restored).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

SETS = ["methods=['kdv1']", "scenarios=['cross-modal']", "lskd=[false]", "ablations=[]", "train.epochs=3",
        "train.checkpoint_every=1", "train.width=16", "keep_weights='all'"]


def bench(out: Path, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    args = [sys.executable, "-m", "cmkd", "bench", "--profile", "smoke", "--out", str(out)]
    for s in SETS:
        args += ["--set", s]
    if wait:
        return subprocess.run(args, capture_output=True, text=True)
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "results").glob("*.json"))}


def duplicate_metric_rows(out: Path) -> int:
    with sqlite3.connect(out / "mlflow.db") as db:
        rows = db.execute("SELECT COUNT(*) - COUNT(DISTINCT run_uuid || '|' || key || '|' || step) FROM metrics").fetchone()
    return int(rows[0])


def set_aside(out: Path) -> int:
    return sum(1 for p in out.rglob(".corrupt/*") if not p.name.endswith(".reason"))


def teacher_and_student(out: Path) -> tuple[dict, dict]:
    recs = list(records(out).values())
    student = next(r for r in recs if r["method"] == "kdv1")
    teacher = next(r for r in recs if r["trial_id"] == student["teacher_id"])
    return teacher, student


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def fault_record(out: Path) -> str:
    _, student = teacher_and_student(out)
    truncate(out / "results" / f"{student['trial_id']}.json")
    return "a results record cut short"


def fault_teacher_result(out: Path) -> str:
    teacher, student = teacher_and_student(out)
    truncate(Path(teacher["out_dir"]) / "result.json")
    (out / "results" / f"{student['trial_id']}.json").unlink()
    return "a teacher's result.json cut short (its student to rerun)"


def fault_swapped_weights(out: Path) -> str:
    import torch

    teacher, student = teacher_and_student(out)
    weights = Path(teacher["out_dir"]) / f"best_{teacher['modality']}.pt"
    shutil.copy(weights, weights.with_suffix(".good"))
    state = torch.load(weights, weights_only=True)
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, weights)
    (out / "results" / f"{student['trial_id']}.json").unlink()
    shutil.rmtree(student["out_dir"])
    return "a teacher's weights swapped for others that fit"


def restore_weights(out: Path) -> None:
    for good in out.rglob("best_*.good"):
        good.replace(good.with_suffix(".pt"))


def kill_mid_run(out: Path) -> str:
    """A fresh benchmark, its driver SIGKILLed once a trial has logged an epoch past its first checkpoint."""
    proc = bench(out, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.5)
        db = out / "mlflow.db"
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    steps = con.execute("SELECT MAX(step) FROM metrics WHERE key = 'epoch_seconds'").fetchone()[0]
            except sqlite3.Error:
                continue
            if steps and steps >= 2:
                break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # the killed driver's private Ray outlives it: stopped as a user would (this stops every Ray instance here)
    subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"], capture_output=True)
    time.sleep(2)
    return "the driver SIGKILLed mid-run"


def report(name: str, out: Path, rc: int, planned: int) -> dict:
    recs = records(out)
    return {"fault": name, "rerun rc": rc, "finished": sum(r["status"] == "finished" for r in recs.values()),
            "planned": planned, "records": len(recs),
            "duplicate MLflow rows": duplicate_metric_rows(out), "set aside": set_aside(out)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/cmkd-faults")
    args = parser.parse_args()
    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    base = root / "base"
    t0 = time.time()
    first = bench(base)
    if first.returncode != 0:
        print(first.stdout[-2000:], first.stderr[-2000:])
        return 1
    planned = len(records(base))
    print(f"base benchmark: {planned} trials in {time.time() - t0:.0f} s")
    rows = []
    for fault in (fault_record, fault_teacher_result, fault_swapped_weights):
        out = root / fault.__name__
        shutil.copytree(base, out, symlinks=True)
        for rec in (out / "results").glob("*.json"):  # the copy's records point at the copy's trial folders
            rec.write_text(rec.read_text().replace(str(base), str(out)))
        name = fault(out)
        run = bench(out)
        if fault is fault_swapped_weights:
            refused = [ln for ln in run.stdout.splitlines() if "changed since the trial finished" in ln]
            rows.append({**report(name + " (rerun refuses)", out, run.returncode, planned),
                         "note": "student refused: best_<m>.pt " + refused[0][refused[0].index("changed since"):][:90]
                         if refused else "NOT refused"})
            restore_weights(out)
            run = bench(out)
            name = "... the weights restored"
        rows.append(report(name, out, run.returncode, planned))
    out = root / "killed"
    name = kill_mid_run(out)
    run = bench(out)
    rows.append(report(name, out, run.returncode, planned))
    try:
        from tabulate import tabulate

        print(tabulate(rows, headers="keys", tablefmt="github"))
    except ImportError:
        for row in rows:
            print(row)
    print(f"in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
