"""One benchmark trial as a typed job, and running it with tracking: Ray-free (a test calls it directly;
the sweep's Ray trainable is a thin wrapper around it).

``run_tracked_trial(job)``: skip if finished; otherwise open (or reuse) the trial's MLflow run, train or
resume through the engine, log every epoch, record the outcome in the results store (finished, or
failed with its error; a trial stopped by the driver is neither), and free what nobody reads.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cmkd
from cmkd.harness.engine.folders import trial_dir, variant_of
from cmkd.harness.engine.spec import TrialSpec
from cmkd.results.record import FINAL
from cmkd.results.store import ResultRecord, ResultsStore


@dataclass(frozen=True)
class TrialJob:
    """Everything a worker needs to run one planned trial and file its result."""

    trial_id: str
    name: str
    stage: int
    spec: TrialSpec
    teacher_id: str | None
    runs_root: str
    results_dir: str
    tracking_uri: str
    experiment_id: str
    config_hash: str
    bench: str
    cpus: float = 1.0
    log_checkpoints: bool = False
    keep_weights: bool = True  # False: delete best weights and exported models once tracked (nobody loads them)
    plugins: tuple[str, ...] = ()
    fail_before_training: bool = False  # a test's failure injection (never set from a user's config)
    tags: dict[str, str] = field(default_factory=dict)
    entry: str = ""  # the data-set entry's label ("" when the data set has one entry)
    pairs: tuple[str, ...] = ()  # the config's teacher -> student pairs this trial serves

    def new_record(self) -> ResultRecord:
        """This trial's record before it has an outcome: its identity in the benchmark."""
        s = self.spec
        return ResultRecord(trial_id=self.trial_id, name=self.name, stage=self.stage, dataset=s.dataset, entry=self.entry,
                            scenario=s.scenario, method=s.method, variant=variant_of(s), modality=s.modality, seed=s.seed,
                            arch=s.arch, teacher_arch=s.teacher_arch, pairs=list(self.pairs),
                            teacher_id=self.teacher_id, config_hash=self.config_hash, code_version=cmkd.__version__,
                            spec=s.to_dict(), options=s.resolved_options())


def run_tracked_trial(job: TrialJob, on_epoch: Callable[[Any], None] | None = None):
    """Run one job; returns its ``TrialResult``, or None when the store already holds it as finished."""
    import torch

    from cmkd.harness.engine.trial import run_trial
    from cmkd.plugins import load_plugins

    started = time.time()
    load_plugins(job.plugins)
    store = ResultsStore(job.results_dir)
    previous = store.get(job.trial_id)
    if previous is not None and previous.status in FINAL:
        return None
    torch.set_num_threads(max(1, int(job.cpus)))
    folder = trial_dir(job.runs_root, job.spec)
    record = job.new_record()
    record.attempts = count_attempt(folder, previous.attempts if previous else 0)
    tracker = open_tracker(job, record, folder)
    try:
        if job.fail_before_training:
            raise RuntimeError(f"injected failure for {job.name}")

        def log(report) -> None:
            tracker.log_epoch(report)
            if on_epoch is not None:
                on_epoch(report)

        # weights are written only where someone may read them: kept on disk (a teacher's students, the
        # benchmark's retention rule) or MLflow artifacts (log_checkpoints: then exported too, and freed from
        # the disk once logged unless kept)
        result = run_trial(job.spec, out_dir=folder, runs_root=job.runs_root, on_epoch=log,
                           keep_weights=job.keep_weights or job.log_checkpoints, export=job.log_checkpoints)
        tracker.finish(result, folder, job.log_checkpoints)
        if not job.keep_weights:
            from .retention import drop_weights

            drop_weights(folder)
    except (SystemExit, KeyboardInterrupt):
        # the driver stopped this trial (Ctrl-C, SIGTERM): not a failure; its checkpoint resumes it
        tracker.fail(None)
        raise
    except BaseException as exc:
        tracker.fail(exc)
        store.put(record.failed(f"{type(exc).__name__}: {exc}"))
        raise
    _release_memory()
    store.put(record.finished(result, started, time.time()))
    return result


def open_tracker(job: TrialJob, record: ResultRecord, folder: Path):
    """The trial's MLflow run (reused when it resumes), tagged from its record and with where this attempt
    runs (a resumed trial's last attempt is the one its result names)."""
    from .tracking import TrialTracker

    tracker = TrialTracker(job.tracking_uri, job.experiment_id, folder / "mlflow_run_id.txt", job.name,
                           tags={**record.mlflow_tags(job.bench), **job.tags},
                           params={"spec": record.spec, "method": record.options})
    record.mlflow_run_id = tracker.run_id
    record.node_id, record.host = ray_node_id(), socket.gethostname()
    tracker.set_tags({"node_id": record.node_id, "host": record.host})
    return tracker


def count_attempt(folder: Path, recorded: int) -> int:
    """This attempt's number, counted in the trial folder when it starts: an attempt killed with its node
    (no record written) still counts."""
    path = folder / "attempts.txt"
    try:
        previous = int(path.read_text())
    except (OSError, ValueError):
        previous = recorded
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(str(previous + 1))
    return previous + 1


def ray_node_id() -> str:
    """The Ray node this process runs on ("" outside Ray)."""
    import sys

    if "ray" not in sys.modules:
        return ""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def _release_memory() -> None:
    """Hand freed heap back to the OS between trials of a reused worker (each Tune trial runs in a
    new thread, and glibc's per-thread arenas otherwise keep every trial's freed memory). What survives a
    full collection is frozen (torch, MLflow, Ray: ~1M long-lived objects), so the next trial's collection
    scans only its own: 0.24 s -> a few ms per trial."""
    import ctypes
    import gc

    gc.collect()
    gc.freeze()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
