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

from .config import TrialSpec
from .results import ResultsStore
from .store import variant_of


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

    def record(self) -> dict[str, Any]:
        """The results-store fields every outcome of this trial shares."""
        s = self.spec
        return {"trial_id": self.trial_id, "name": self.name, "stage": self.stage, "dataset": s.dataset,
                "entry": self.entry, "scenario": s.scenario, "method": s.method, "variant": variant_of(s), "modality": s.modality,
                "seed": s.seed, "teacher_id": self.teacher_id, "config_hash": self.config_hash,
                "code_version": cmkd.__version__, "spec": s.to_dict(), "options": resolved_options(s)}


def resolved_options(spec: TrialSpec) -> dict[str, Any]:
    """Every option of the trial's method, defaults included (what produced the numbers, not only what was set)."""
    from cmkd.methods import get_method

    cls = get_method(spec.method)
    return cls.Options.from_dict(spec.method_options, spec.method).to_dict()


def run_tracked_trial(job: TrialJob, on_epoch: Callable[[Any], None] | None = None):
    """Run one job; returns its ``TrialResult``, or None when the store already holds it as finished."""
    import torch

    from .engine import run_trial
    from .plugins import load_plugins
    from .store import trial_dir
    from .tracking import TrialTracker

    started = time.time()
    load_plugins(job.plugins)
    store = ResultsStore(job.results_dir)
    if store.status(job.trial_id) == "finished":
        return None
    torch.set_num_threads(max(1, int(job.cpus)))
    spec = job.spec
    folder = trial_dir(job.runs_root, spec)
    record = job.record()
    record["attempts"] = count_attempt(folder, int((store.get(job.trial_id) or {}).get("attempts", 0)))
    tracker = TrialTracker(job.tracking_uri, job.experiment_id, folder / "mlflow_run_id.txt", job.name,
                           tags={"bench": job.bench, "stage": str(job.stage), "dataset": spec.dataset,
                                 "entry": job.entry, "scenario": spec.scenario, "method": spec.method, "variant": record["variant"],
                                 "modality": str(spec.modality or "all"), "seed": str(spec.seed),
                                 "trial_id": job.trial_id, "teacher_id": str(job.teacher_id or ""),
                                 "config_hash": job.config_hash, "code_version": cmkd.__version__, **job.tags},
                           params={"spec": spec.to_dict(), "method": resolved_options(spec)})
    record["mlflow_run_id"] = tracker.run_id
    # where this attempt runs (a resumed trial's last attempt is the one its result names)
    record["node_id"], record["host"] = ray_node_id(), socket.gethostname()
    tracker.set_tags({"node_id": record["node_id"], "host": record["host"]})
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
        result = run_trial(spec, out_dir=folder, runs_root=job.runs_root, on_epoch=log,
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
        store.put({**record, "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000]})
        raise
    _release_memory()
    store.put({**record, "status": "finished", "outputs": {k: {kk: vv for kk, vv in v.items() if kk != "confusion"}
                                                             for k, v in result.outputs.items()},
               "epochs_run": result.epochs_run, "wall_time_s": result.wall_time_s,
               "images_per_s": result.images_per_s, "device": result.device, "out_dir": result.out_dir,
               "resumed_from": result.resumed_from, "threads": result.threads,
               "train_time_s": result.train_time_s, "checkpoint_s": result.checkpoint_s, "history": result.history,
               # when this worker started and ended the job (the sweep's ordering; fixed cost = job - training)
               "started_at": started, "ended_at": time.time()})
    return result


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
