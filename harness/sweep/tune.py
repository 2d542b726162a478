"""The sweep: a benchmark's plan run as Ray Tune trials, tracked in MLflow.

One Tuner runs the whole plan; its searcher starts a student as soon as its own teacher has finished
(``schedule.py``: no barrier between stage 1 and stage 2). Every trial is
resumable on its own: the engine checkpoints into the trial folder by its policy (on storage every
node sees), a finished trial leaves a record in the results store, and a rerun of the same
benchmark skips finished trials, resumes unfinished ones, and never duplicates a result.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cmkd
from cmkd.errors import Interrupted, UserError
from cmkd.harness.engine.folders import BENCH_FILE, RESULT_FILE, SPEC_FILE
from cmkd.harness.engine.io import write_json
from cmkd.harness.engine.locks import FolderLock
from cmkd.plugins import plugins_from_env
from cmkd.results.record import FINAL
from cmkd.results.store import SUPERSEDED_DIR, ResultsStore

from .bench_config import BenchConfig
from .console import terminal_to_log
from .job import TrialJob, run_tracked_trial
from .plan import PlannedTrial, build_plan, costs, entry_infos
from .progress import LiveView, PlainView, Planned, Progress, wants_live
from .schedule import Job, Ready

#: environment of Ray workers: few malloc arenas, so that reused workers do not accumulate freed memory
WORKER_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
              "MALLOC_ARENA_MAX": "2"}


# ---- the trial, as a Ray Tune function trainable -------------------------------------------------
def bench_trainable(config: dict[str, Any], jobs: dict[str, TrialJob]) -> None:
    """Ray's side of a trial: the typed job in, per-epoch reports out; the work is :func:`run_tracked_trial`.

    The search space holds trial ids only (Tune rewrites objects it finds in a space); the jobs travel
    once through the object store (``tune.with_parameters``)."""
    from ray import tune

    job = jobs[config["trial"]]

    def report(epoch_report) -> None:
        tune.report({"epoch": epoch_report.epoch, "loss": epoch_report.losses.get("loss", float("nan")),
                     "seconds": epoch_report.seconds, **{f"val_f1/{k}": v for k, v in epoch_report.val_f1.items()}})

    try:
        result = run_tracked_trial(job, report)
    except UserError:
        # bad input (a missing teacher, data that changed) fails the same way on every attempt: the job has
        # recorded it as failed; ending normally keeps Tune from spending a retry on it
        tune.report({"user_error": 1})
        return
    if result is None or result.reused:  # nothing trained: Tune still wants one report
        tune.report({"finished": 1})


# ---- progress: the Tune callback that feeds it ---------------------------------------------------------
def _callback(progress: Progress, jobs: dict[str, TrialJob], on_end: Callable[[], None]):
    from ray.tune import Callback

    class ProgressCallback(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            progress.start(trial.config["trial"])

        def on_trial_result(self, iteration, trials, trial, result, **info):
            progress.epoch(trial.config["trial"], result)

        def on_step_end(self, iteration, trials, **info):
            progress.view.refresh(progress)

        def on_trial_complete(self, iteration, trials, trial, **info):
            t = jobs[trial.config["trial"]]
            rec = progress.store.get(t.trial_id) or t.new_record()
            on_end()
            if rec.status == "failed":  # a record the job filed (an unfiled one is "pending")  # a user error: recorded by the job, never retried
                progress.end(t.trial_id, "failed", f"FAILED {t.name} (not retried: bad input): {rec.error or ''}"[:300])
                return
            if rec.status == "diverged":
                progress.end(t.trial_id, "diverged", f"DIVERGED {t.name} (recorded, not retried): {rec.error}"[:300])
                return
            f1 = ", ".join(f"{k} {100 * v['test_f1']:.1f}" for k, v in rec.outputs.items())
            progress.end(t.trial_id, "finished", f"finished {t.name}: test F1 {f1} ({rec.wall_time_s or 0:.0f} s)")

        def on_trial_error(self, iteration, trials, trial, **info):
            t = jobs[trial.config["trial"]]
            rec = progress.store.get(t.trial_id)
            # no record when filing it failed too (a read-only or full disk): the error Tune kept says why
            why = (rec.error if rec and rec.error else "") or _last_error_line(trial)
            attempts = rec.attempts if rec else trial.num_failures
            progress.end(t.trial_id, "failed", f"FAILED {t.name} after {attempts} attempt(s): {why}"[:300])

    return ProgressCallback()


def _last_error_line(trial) -> str:
    """The last line of the traceback Tune kept for a failed trial ("OSError: [Errno 30] Read-only ...")."""
    try:
        text = trial.get_error() or ""
    except Exception:  # noqa: BLE001 - storage gone too: say what we know
        text = ""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else "the worker ended without an error message (see logs/driver.log)"


# ---- the driver -------------------------------------------------------------------------------------
@dataclass
class BenchSummary:
    out_dir: Path
    experiment: str
    tracking_uri: str
    finished: int
    failed: int
    skipped: int
    planned: int
    wall_s: float
    models: Any = None  # the kept weights (retention.kept_models)
    diverged: int = 0  # trials a non-finite loss ended (recorded, never retried, left out of the tables' means)
    loss_rose: list[str] = field(default_factory=list)  # trials whose last training loss ended above their first


def bench_folder(cfg: BenchConfig, out: str | Path | None) -> Path:
    if out is not None and not str(out).strip():
        raise UserError("--out is empty; pass a folder (or leave --out out for results/<profile name>)")
    return Path(out or Path("results") / cfg.name).resolve()


def check_bench_folder(folder: Path, cfg: BenchConfig) -> None:
    """Refuse, before anything touches it, a folder that is not this benchmark's to write: a file, a folder
    inside another benchmark or a trial folder, or one that holds a benchmark of another config."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder} is a file; pass a folder")
    for parent in folder.parents:
        if (parent / BENCH_FILE).is_file():
            raise UserError(f"--out {folder} lies inside benchmark folder {parent}; pass a folder of its own "
                            f"(e.g. {parent.parent / (folder.name + '-bench')})")
    for marker in (SPEC_FILE, RESULT_FILE):
        for where in (folder, *folder.parents):
            if (where / marker).is_file():
                raise UserError(f"--out {folder} lies inside trial folder {where}; pass a folder of its own")
    other = _bench_marker(folder, cfg)
    if other is not None and other.get("config_hash") != cfg.config_hash():
        raise UserError(f"{folder} holds benchmark {other.get('name')!r} with another config (hash "
                        f"{other.get('config_hash')}, this one {cfg.config_hash()}); pass --out NEW_FOLDER for a new "
                        "benchmark")


def _bench_marker(folder: Path, cfg: BenchConfig) -> dict | None:
    """The folder's ``bench.json``. A damaged one is set aside when every record in the folder is this
    config's (the folder is then claimed anew); otherwise it is refused, since the folder's records may
    belong to another config."""
    from cmkd.harness.engine.corrupt import PARSE_ERRORS, read_json_file, set_aside

    path = folder / BENCH_FILE
    if not path.is_file():
        return None
    try:
        other = read_json_file(path)
        str(other["config_hash"])
        return other
    except PARSE_ERRORS as exc:
        hashes = {rec.config_hash for rec in ResultsStore(folder / "results").records()} if (folder / "results").is_dir() else set()
        if hashes - {cfg.config_hash()}:
            raise UserError(f"{path} does not parse ({type(exc).__name__}) and the folder holds records of another "
                            "config; restore that file, or pass --out NEW_FOLDER") from None
        set_aside(path, f"{type(exc).__name__}", "the folder's records are all this config's: it is claimed anew")
        return None


def claim_bench(folder: Path, cfg: BenchConfig) -> None:
    """A folder holds one benchmark config: a changed config is a new benchmark, not a silent mix."""
    check_bench_folder(folder, cfg)
    if (folder / BENCH_FILE).is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    write_json({"name": cfg.name, "config_hash": cfg.config_hash(), "config": cfg.to_dict(),
                "code_version": cmkd.__version__}, folder / BENCH_FILE)


def resolve_device(cfg: BenchConfig, cluster_gpus: float) -> BenchConfig:
    import dataclasses

    if cfg.resources.gpus_per_trial > 0 and cluster_gpus <= 0:
        if not cfg.cpu_fallback:
            raise UserError(f"the config asks for {cfg.resources.gpus_per_trial} GPU per trial but no GPU is visible; "
                            "pass --cpu-fallback to run on CPU, or --set resources.gpus_per_trial=0")
        return dataclasses.replace(cfg, resources=dataclasses.replace(cfg.resources, gpus_per_trial=0.0),
                                   train=dataclasses.replace(cfg.train, device="cpu"))
    return cfg


class StopSignals:
    """SIGINT / SIGTERM stop the benchmark honestly: Tune is asked to end the sweep (no new trial starts;
    running trials write a checkpoint as they stop), what finished is kept, and the run ends with
    :class:`Interrupted` (exit 130 / 143). A second signal stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.fitting = False  # inside Tune's fit(): ask Tune to stop (SIGUSR1, its own stop signal)
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum, "interrupted twice: stopped at once; run the same command to resume")
        self.signum = signum
        if self.fitting:
            os.kill(os.getpid(), signal.SIGUSR1)
        else:
            raise Interrupted(signum, "interrupted before any trial started; run the same command to resume")

    def __enter__(self) -> "StopSignals":
        import threading

        if threading.current_thread() is threading.main_thread():
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # this handler, not Tune's, owns Ctrl-C
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


#: a resource only the private local instance of a ``cmkd bench`` without --address declares: another
#: driver's ``--address auto`` finds that instance too, and must not join it (it dies with its benchmark)
PRIVATE_RESOURCE = "cmkd_private_bench"


def check_address(address: str | None) -> None:
    """A malformed address, or an explicit HOST:PORT that does not answer, fails now (before anything is
    written), not after a long connection retry."""
    if not address or address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address takes auto, HOST:PORT or ray://HOST:PORT (what `ray start --head` prints), "
                        f"got {address!r}")
    if address and address != "auto" and ":" in address and "://" not in address:
        import socket

        host, port = address.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot reach the Ray cluster at {address} ({exc}); start it with `ray start --head` "
                            "and pass the address it prints, or drop --address to run locally") from None


def init_ray(address: str | None, env: dict[str, str]):
    import ray

    if ray.is_initialized():
        return ray
    try:
        runtime_env = {"env_vars": env}
        if address:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        else:
            # "local": a new instance of this machine's CPUs, never whatever Ray happens to run here (without
            # it, ray.init attaches to any running instance it finds, and then refuses num_cpus)
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, resources={PRIVATE_RESOURCE: 1},
                     object_store_memory=256 * 2**20, runtime_env=runtime_env, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot start or reach Ray{' at ' + address if address else ''} ({exc}); "
                        "check the address (ray start --head prints it) or drop --address to run locally") from None
    if address and ray.cluster_resources().get(PRIVATE_RESOURCE):
        ray.shutdown()
        raise UserError(f"the Ray instance at --address {address} is another cmkd bench's own (started without "
                        "--address; it ends with that benchmark); start a shared one with `ray start --head` and pass "
                        "the address it prints, or drop --address to run on a private instance")
    return ray


def check_fit(cfg: BenchConfig, nodes: list[dict[str, float]], where: str) -> None:
    """One trial must fit on some node (its CPUs and GPUs), or the sweep would wait forever with no word."""
    need = {"CPU": cfg.resources.cpus_per_trial, "GPU": cfg.resources.gpus_per_trial}
    if any(all(node.get(k, 0.0) >= v for k, v in need.items() if v > 0) for node in nodes):
        return
    most = {k: max((node.get(k, 0.0) for node in nodes), default=0.0) for k in need}
    raise UserError(f"a trial asks for {need['CPU']:g} CPU(s) and {need['GPU']:g} GPU(s), but no node of {where} has "
                    f"that much (largest: {most['CPU']:g} CPU(s), {most['GPU']:g} GPU(s)); lower "
                    "resources.cpus_per_trial / gpus_per_trial")


def cluster_nodes(ray) -> list[dict[str, float]]:
    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def run_bench(cfg: BenchConfig, out: str | Path | None = None, address: str | None = None,
              tracking_uri: str | None = None, say: Callable[[str], None] | None = None, inject_failure: str = "",
              quiet: bool = False) -> BenchSummary:
    """Run (or resume) a benchmark. ``say`` receives plain progress lines (None: the terminal, as a live
    view when it is one). ``quiet``: what Ray, Tune and MLflow print goes to ``<out>/logs/driver.log``."""
    from .tracking import check_uri, default_uri

    t_start = time.time()
    folder = bench_folder(cfg, out)
    check_bench_folder(folder, cfg)  # before the lock, Ray or any log touches the folder
    uri = tracking_uri or default_uri(folder)
    check_uri(uri)
    infos = entry_infos(cfg)
    plan = build_plan(cfg, infos)  # validates data, methods and teachers before anything starts
    if not address:  # this machine: what a trial asks for must exist here, checked before anything starts
        import torch

        gpus = float(torch.cuda.device_count())
        if cfg.resources.gpus_per_trial > 0:
            cfg = resolve_device(cfg, gpus)
        if str(cfg.train.device).startswith("cuda") and gpus == 0:
            raise UserError(f"train.device = {cfg.train.device!r} but this machine has no GPU; use \"auto\" or \"cpu\"")
        check_fit(cfg, [{"CPU": float(os.cpu_count() or 1), "GPU": gpus}], "this machine")
    check_address(address)
    with FolderLock(folder, "bench") as lock, contextlib.ExitStack() as stack:
        term = stack.enter_context(terminal_to_log(folder / "logs" / "driver.log")) if quiet else sys.stdout
        live = say is None and wants_live(term)  # a caller's own line printer always gets plain lines
        say = say or (lambda text: print(text, file=term, flush=True))
        view = LiveView(term) if live else PlainView(say)
        stack.callback(lambda: view.close(None))
        line = view.say if isinstance(view, LiveView) else say
        if quiet:
            line(f"Ray, Tune and MLflow messages: {folder / 'logs' / 'driver.log'}")
        try:
            ray = init_ray(address, WORKER_ENV)
            if address:
                check_fit(cfg, cluster_nodes(ray), f"the cluster at {address}")
        except UserError:
            lock.discard_if_new()
            raise
        with StopSignals() as stop:  # after ray.init, whose core installs a SIGTERM handler of its own
            claim_bench(folder, cfg)
            return _run_locked(cfg, plan, folder, uri, address, ray, stop, view, line, t_start, inject_failure, infos)


def planned_time(todo: list[PlannedTrial], infos: dict, cfg: BenchConfig, slots: int):
    """The estimate of what is left to run, which the live ETA stands on until epochs are measured: measured on
    this CPU for CPU trials, from ``per_image_ms`` for GPU trials that state it; None otherwise (the driver
    never touches a GPU the trials need)."""
    import torch

    from .estimate import plan_time

    if cfg.resources.gpus_per_trial > 0 and not cfg.per_image_ms:
        return None
    return plan_time(todo, infos, cfg, cpus=float(slots * cfg.resources.cpus_per_trial),
                     gpus=float(slots * cfg.resources.gpus_per_trial) or None, device=torch.device("cpu"))


def _run_locked(cfg: BenchConfig, plan: list[PlannedTrial], folder: Path, uri: str, address: str | None, ray,
                stop: StopSignals, view, say: Callable[[str], None], t_start: float,
                inject_failure: str = "", infos: dict | None = None) -> BenchSummary:
    from .retention import MODELS_FILE, kept_models, prune
    from .tracking import setup_experiment

    experiment = f"cmkd-{cfg.name}-{cfg.config_hash()}"
    exp_id = setup_experiment(uri, experiment, folder / "mlartifacts", {"config_hash": cfg.config_hash(),
                                                                        "profile": cfg.name})
    if address and cfg.resources.gpus_per_trial > 0:
        cfg = resolve_device(cfg, float(ray.cluster_resources().get("GPU", 0)))

    from .adaptive import band_text, second_plan

    infos = infos or entry_infos(cfg)
    store = ResultsStore(folder / "results")
    candidates = second_plan(cfg, infos)  # a record of any trial either stage may run is this config's
    superseded = store.set_aside_unplanned({p.trial_id for p in plan + candidates})
    if superseded:
        from cmkd.harness.engine.corrupt import warn

        warn(f"{superseded} result records in {store.folder} belong to trials this config no longer plans (run on "
             f"other data, or by a version of the code that gave a spec another meaning); moved to "
             f"{store.folder / SUPERSEDED_DIR}: the tables hold this config's current trials only")
    runs_root = folder / "runs"
    lost_teachers(plan, store, runs_root)  # set aside first, so that the count below leaves them out
    say(f"benchmark {cfg.name} ({cfg.config_hash()}): {len(plan)} trials planned"
        + (f" (seeds {_seed_text(cfg.seeds)}; then seeds {_seed_text(cfg.adaptive.seeds)} for the Table 1 cells whose "
           f"Holm p lies in {band_text(cfg.adaptive.band)})" if cfg.adaptive.seeds else "")
        + f", {sum(store.status(p.trial_id) in FINAL for p in plan)} already finished; output {folder}")
    pruning = (lambda: prune(store)) if cfg.keep_weights == "best" else (lambda: None)
    phase = _Phase(cfg, folder, runs_root, uri, exp_id, address, ray, stop, view, say, store, infos, pruning,
                   inject_failure)
    progress = phase.run(plan)
    if cfg.adaptive.seeds and stop.signum is None:
        more = second_stage(cfg, infos, plan, candidates, store, folder, say)
        if more:
            view.reopen()
            plan = plan + more
            progress = phase.run(more)
    models = None
    try:
        pruning()
        models = kept_models(store)
        models.to_csv(folder / MODELS_FILE, index=False)
        store.write_parquet(folder / "results.parquet")
        store.write_history(folder / "history.parquet")
    except OSError as exc:  # a read-only or full folder: every trial's record is kept, the summaries wait
        if stop.signum is None:
            raise UserError(f"cannot write the benchmark's summary files in {folder} ({exc.strerror or exc}); make it "
                            "writable and run the same command again: every finished trial is kept") from None
    statuses = [store.status(p.trial_id) for p in plan]
    log_session(folder, plan, cfg, statuses, t_start, stop.signum is not None, experiment, exp_id, uri)
    if stop.signum is not None:
        raise Interrupted(stop.signum, f"interrupted: {statuses.count('finished')}/{len(plan)} trials finished "
                                       f"(kept in {folder}); run the same command to resume")
    summary = BenchSummary(folder, experiment, uri, statuses.count("finished"), statuses.count("failed"),
                           statuses.count("skipped"), len(plan), time.time() - t_start, models=models,
                           diverged=statuses.count("diverged"),
                           loss_rose=[r.name for r in store.records() if r.status in FINAL and r.loss_rose])
    best = progress.best()
    if best != progress.last_best:
        say(best)
    return summary


@dataclass
class _Phase:
    """Runs one stage's trials that are not final yet: their estimate, progress and one Tuner."""

    cfg: BenchConfig
    folder: Path
    runs_root: Path
    uri: str
    exp_id: str
    address: str | None
    ray: Any
    stop: "StopSignals"
    view: Any
    say: Callable[[str], None]
    store: ResultsStore
    infos: dict
    pruning: Callable[[], None]
    inject_failure: str = ""

    def run(self, plan: list[PlannedTrial]) -> Progress:
        cfg, store, say = self.cfg, self.store, self.say
        done = {p.trial_id for p in plan if store.status(p.trial_id) in FINAL} - lost_teachers(plan, store, self.runs_root)
        todo = [p for p in plan if p.trial_id not in done]
        slots = cfg.max_concurrent or cluster_slots(cfg)
        cost = costs(todo)
        prior = planned_time(todo, self.infos, cfg, slots) if todo and self.infos else None
        if prior is not None:
            say(prior.lines[0].replace("time: ", "estimate: ", 1))
        progress = Progress({p.trial_id: Planned(p.name, cost[p.trial_id], p.spec.train.epochs, p.data_key,
                                                 p.teacher_id, p.spec.method) for p in todo}, store, slots, self.view, prior)
        if todo and self.address:  # on a cluster: every node must see this folder and the data before anything starts
            from .preflight import check_nodes

            say(f"preflight: {check_nodes(self.ray, self.folder, cfg)} Ray nodes see {self.folder} and the data")
        if todo and self.stop.signum is None:
            say(f"{len(todo)} trials to run on {slots} slot(s); a student starts as soon as its own teacher has finished")
            self.stop.fitting = True
            try:
                run_trials(todo, cfg, self.folder, self.runs_root, self.uri, self.exp_id, progress, cost, self.pruning,
                           self.inject_failure)
            finally:
                self.stop.fitting = False
                self.view.close(progress)
        return progress


def _seed_text(seeds) -> str:
    s = sorted(seeds)
    return f"{s[0]}-{s[-1]}" if s == list(range(s[0], s[-1] + 1)) and len(s) > 2 else ",".join(map(str, s))


def second_stage(cfg: BenchConfig, infos: dict, plan: list[PlannedTrial], candidates: list[PlannedTrial],
                 store: ResultsStore, folder: Path, say: Callable[[str], None]) -> list[PlannedTrial]:
    """The second seeds' trials of the cells undecided at the first seeds (``adaptive.py``); none until every
    first-stage trial has ended, since the decision reads all of them."""
    from .adaptive import band_text, extension, undecided_cells, write_decision

    if any(store.status(p.trial_id) not in FINAL for p in plan):
        say("second stage (adaptive.seeds) not planned: some first-stage trials have not finished; run the same "
            "command again to retry them, then the second stage is decided")
        return []
    cells = undecided_cells(store.rows(), cfg)
    more = extension(cfg, infos, cells, candidates)
    write_decision(folder, cfg, cells, more)
    say(f"second stage: {len(cells)} Table 1 cell(s) with Holm p in {band_text(cfg.adaptive.band)} at seeds {_seed_text(cfg.seeds)}"
        + (": " + "; ".join(c.label() for c in cells) + f"; {len(more)} trials of seeds {_seed_text(cfg.adaptive.seeds)}"
           if cells else ": none, no more trials") + f" ({folder / 'adaptive.json'})")
    return more


def log_session(folder: Path, plan: list[PlannedTrial], cfg: BenchConfig, statuses: list[str | None], t_start: float,
                interrupted: bool, experiment: str, exp_id: str, uri: str) -> None:
    """This invocation's provenance into ``run.json`` (the report's header); a folder that cannot take it
    loses only the header's facts, never a result."""
    from cmkd.results.provenance import RUN_FILE, Session, code_commit, now, record_session, this_machine

    commit, dirty = code_commit()
    session = Session(started=now(t_start), ended=now(), wall_s=round(time.time() - t_start, 1), commit=commit, dirty=dirty,
                      machine=this_machine(max(1, int(cfg.resources.cpus_per_trial))), planned=len(plan),
                      finished=statuses.count("finished"), failed=statuses.count("failed"),
                      skipped=statuses.count("skipped"), diverged=statuses.count("diverged"), interrupted=interrupted,
                      experiment=experiment, experiment_id=str(exp_id), tracking_uri=uri)
    try:
        record_session(folder, plan, session)
    except OSError as exc:
        from cmkd.harness.engine.corrupt import warn

        warn(f"cannot write {folder / RUN_FILE} ({exc.strerror or exc}); the report will lack this run's provenance")


def lost_teachers(plan: list[PlannedTrial], store: ResultsStore, runs_root: Path) -> set[str]:
    """Teachers recorded as finished whose folder no longer holds their result or weights (set aside as
    damaged, or deleted) while a student still needs them: their records are set aside so that they train
    again, instead of failing each student with "no finished teacher"."""
    from cmkd.harness.engine.corrupt import set_aside
    from cmkd.harness.engine.folders import is_finished, trial_dir

    pending_teachers = {p.teacher_id for p in plan if p.teacher_id and store.status(p.trial_id) != "finished"}
    lost = set()
    for p in plan:
        if p.trial_id in pending_teachers and store.status(p.trial_id) == "finished":
            folder = trial_dir(runs_root, p.spec)
            if not is_finished(folder) or not any(folder.glob("best_*.pt")):
                set_aside(store.path(p.trial_id), f"teacher folder {folder} no longer holds its result and weights",
                          "the teacher trains again")
                lost.add(p.trial_id)
    return lost


def make_job(p: PlannedTrial, cfg: BenchConfig, folder: Path, runs_root: Path, uri: str, exp_id: str,
             inject_failure: str = "") -> TrialJob:
    from cmkd.methods import get_method

    spec = p.spec
    if spec.train != cfg.train:  # resolve_device may have moved the benchmark to CPU
        spec = spec.replace(train=cfg.train)
    return TrialJob(trial_id=p.trial_id, name=p.name, stage=p.stage, spec=spec, teacher_id=p.teacher_id,
                    runs_root=str(runs_root), results_dir=str(folder / "results"), tracking_uri=uri,
                    experiment_id=exp_id, config_hash=cfg.config_hash(), bench=cfg.name,
                    cpus=cfg.resources.cpus_per_trial, log_checkpoints=cfg.log_checkpoints,
                    keep_weights=cfg.keep_weights in ("all", "best") or get_method(spec.method).teaches is not None,
                    plugins=(*plugins_from_env(), *cfg.plugins), entry=p.entry, pairs=p.pairs,
                    fail_before_training=bool(inject_failure) and inject_failure in p.name)


def _searcher(todo: list[PlannedTrial], jobs: dict[str, TrialJob], progress: Progress, cost: dict[str, float]):
    """Ray Tune's view of :class:`schedule.Ready`: the planned trials in launch order, each suggested once
    its teacher's trial has ended (no stage barrier); the students of a teacher that failed are skipped."""
    from ray.tune.search import Searcher

    ready = Ready([Job(p.trial_id, cost[p.trial_id], p.teacher_id, p.stage) for p in todo])
    store = progress.store

    class AfterTeacher(Searcher):
        def __init__(self) -> None:
            super().__init__()
            self.live: dict[str, str] = {}  # Tune's trial id -> the plan's

        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            return True

        def suggest(self, trial_id: str):
            while (job := ready.next()) is not None:
                if job.teacher and store.status(job.teacher) != "finished":
                    ready.ended(job.id)
                    store.put(jobs[job.id].new_record().skipped(f"teacher {job.teacher} did not finish"))
                    progress.end(job.id, "skipped", f"skipped {jobs[job.id].name}: its teacher did not finish")
                    continue
                self.live[trial_id] = job.id
                return {"trial": job.id}
            return None if ready.pending else Searcher.FINISHED

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            if trial_id in self.live:
                ready.ended(self.live.pop(trial_id))

        def save(self, checkpoint_path: str) -> None:
            pass  # nothing to keep: a rerun rebuilds the plan and reads what finished from the results store

        def restore(self, checkpoint_path: str) -> None:
            pass

    return AfterTeacher()


def cluster_slots(cfg: BenchConfig) -> int:
    """How many trials the Ray cluster can run at once with the config's resources per trial."""
    import ray

    have = ray.cluster_resources()
    slots = have.get("CPU", 1.0) // cfg.resources.cpus_per_trial
    if cfg.resources.gpus_per_trial > 0:
        slots = min(slots, have.get("GPU", 0.0) // cfg.resources.gpus_per_trial)
    return max(1, int(slots))


def run_trials(todo: list[PlannedTrial], cfg: BenchConfig, folder: Path, runs_root: Path, uri: str, exp_id: str,
               progress: Progress, cost: dict[str, float], on_end: Callable[[], None], inject_failure: str = "") -> None:
    """One Tuner for the whole plan; its searcher starts each trial once the trial's teacher has ended."""
    from ray import tune

    jobs = {p.trial_id: make_job(p, cfg, folder, runs_root, uri, exp_id, inject_failure) for p in todo}
    trainable = tune.with_resources(tune.with_parameters(bench_trainable, jobs=jobs),
                                    {"cpu": cfg.resources.cpus_per_trial, "gpu": cfg.resources.gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        # a custom searcher gets one pending trial at a time unless a concurrency limit is set: set it to
        # the slots the cluster has (or the config's max_concurrent), so that every slot gets a trial
        tune_config=tune.TuneConfig(search_alg=_searcher(todo, jobs, progress, cost), num_samples=len(jobs),
                                    max_concurrent_trials=cfg.max_concurrent or cluster_slots(cfg), reuse_actors=True,
                                    trial_name_creator=lambda t: f"{jobs[t.config['trial']].name}-{t.trial_id}",
                                    trial_dirname_creator=lambda t: f"{t.config['trial']}-{t.trial_id}"),
        run_config=tune.RunConfig(name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
                                  storage_path=str(folder / "ray"), verbose=0, callbacks=[_callback(progress, jobs, on_end)],
                                  failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                                  log_to_file=True),
    )
    tuner.fit()


def dry_run(cfg: BenchConfig, say: Callable[[str], None] = print, cpus: float | None = None,
            gpus: float | None = None) -> list[PlannedTrial]:
    """The plan and its wall-clock estimate, without training; real data sets missing from disk are
    planned from their declared sizes."""
    from .estimate import estimate
    from .plan import describe, entry_infos

    infos = entry_infos(cfg, declared=True)
    plan = build_plan(cfg, infos)
    say(f"benchmark {cfg.name} ({cfg.config_hash()}), seeds {list(cfg.seeds)}, {cfg.train.epochs} epochs, "
        f"batch {cfg.train.batch_size}")
    say(describe(plan))
    say(estimate(plan, infos, cfg, cpus, gpus))
    if cfg.adaptive.seeds:
        from .adaptive import band_text, second_plan

        more = second_plan(cfg, infos)
        whole = estimate(plan + more, infos, cfg, cpus, gpus).splitlines()[0].removeprefix("time: ")
        say(f"second stage: seeds {_seed_text(cfg.adaptive.seeds)} for the Table 1 cells whose Holm p at seeds "
            f"{_seed_text(cfg.seeds)} lies in {band_text(cfg.adaptive.band)}: from none to {len(more)} more trials (if every cell needs them, both stages: {whole})")
    return plan
