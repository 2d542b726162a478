"""What a running benchmark shows: counts, the running trials with their epoch and last validation F1,
failures, elapsed time and an ETA from measured epoch and per-trial times.

:class:`Progress` holds the state, fed by the sweep's Tune callback (trial start, every epoch's report,
trial end); a view renders it: :class:`LiveView` (a ``rich`` live table on a terminal) or
:class:`PlainView` (one line per event plus a status line every minute: logs, CI, pipes). The ETA
list-schedules what is left (``schedule.simulate``: running trials' remaining epochs, pending trials
waiting for their teachers) on the sweep's slots, with each data set's measured seconds per student
epoch times each method's declared relative cost.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from cmkd.harness.engine.spec import data_key
from cmkd.results.store import ResultsStore

from .schedule import Job, simulate


def clock(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


NOTHING_YET = "(no distilled student finished yet)"


@dataclass
class Running:
    name: str
    epochs: int
    started: float = field(default_factory=time.time)
    epoch: int = 0
    val_f1: dict[str, float] = field(default_factory=dict)
    epoch_s: float | None = None
    trained_s: float = 0.0  # the reported epochs' seconds: the rest of the trial's time is its fixed cost


@dataclass
class Planned:
    """What progress needs of a planned trial."""

    name: str
    cost: float  # trial-epochs in student epochs
    epochs: int
    data: str  # the data-set entry's key: epoch times are measured per entry
    teacher: str | None = None
    method: str = ""  # epoch times are also kept per (entry, method): a method's own time beats its declared cost


class Progress:
    def __init__(self, todo: dict[str, Planned], store: ResultsStore, slots: int, view: "PlainView | LiveView",
                 prior=None):
        self.todo, self.store, self.slots, self.view = todo, store, max(1, slots), view
        #: the plan's estimate (``estimate.PlanTime``): the ETA until the first epoch is measured
        self.prior = prior
        self.running: dict[str, Running] = {}
        self.ended: dict[str, str] = {}  # trial id -> finished / failed / skipped
        self.started = time.time()
        self.unit_s: dict[str, list[float]] = {}  # data key -> measured seconds per student epoch
        self.method_s: dict[tuple[str, str], list[float]] = {}  # (data key, method) -> measured seconds per epoch
        self.fixed_s: list[float] = []  # per finished trial: its time besides training (start-up, evaluation, files)
        self.last_best = ""
        self._eta: tuple[float, float | None] = (0.0, None)

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks and searcher with the experiment's state: the view (a terminal stream)
        stays behind."""
        return {**self.__dict__, "view": None}

    # ---- events (the sweep's callback) ----------------------------------------------------------
    def start(self, trial: str) -> None:
        p = self.todo[trial]
        self.running[trial] = Running(p.name, p.epochs)
        self.view.refresh(self)

    def epoch(self, trial: str, report: dict[str, Any]) -> None:
        run = self.running.get(trial)
        if run is None or "epoch" not in report:
            return
        p = self.todo[trial]
        run.epoch = int(report["epoch"])
        run.val_f1 = {k[len("val_f1/"):]: float(v) for k, v in report.items() if k.startswith("val_f1/")}
        if report.get("seconds"):
            run.epoch_s = float(report["seconds"])
            run.trained_s += run.epoch_s
            self.unit_s.setdefault(p.data, []).append(run.epoch_s / max(p.cost / max(p.epochs, 1), 1e-9))
            self.method_s.setdefault((p.data, p.method), []).append(run.epoch_s)
        self.view.refresh(self)

    def end(self, trial: str, status: str, text: str) -> None:
        run = self.running.pop(trial, None)
        if run is not None and status == "finished" and run.epoch:
            self.fixed_s.append(max(0.0, time.time() - run.started - run.trained_s))
        self.ended[trial] = status
        self.view.event(self, text)
        if status == "finished" and self.count("finished") % 10 == 0:
            self.say_best()

    def say_best(self) -> None:
        best = self.best()
        if best != self.last_best and not best.endswith(NOTHING_YET):  # never the same line twice in a row
            self.last_best = best
            self.view.note(best)

    # ---- numbers -------------------------------------------------------------------------------
    def count(self, status: str) -> int:
        return sum(1 for s in self.ended.values() if s == status)

    @property
    def elapsed(self) -> float:
        return time.time() - self.started

    def pending(self) -> int:
        return len(self.todo) - len(self.ended) - len(self.running)

    def eta(self) -> float | None:
        """Seconds until the last trial ends (None until an epoch time is measured): each trial's epochs at its
        method's measured epoch time on that data (or, before one is measured, the measured seconds per student
        epoch times the method's declared cost), plus the median fixed time of the finished trials; recomputed
        at most every 5 s."""
        now = time.time()
        if now - self._eta[0] < 5 and self._eta[1] is not None:
            return max(0.0, self._eta[1] - (now - self._eta[0]))
        measured = {d: statistics.median(v) for d, v in self.unit_s.items() if v}
        if not measured:
            return self._prior_eta()
        fallback = statistics.median(measured.values())
        fixed = statistics.median(self.fixed_s) if self.fixed_s else 0.0
        per_method = {k: statistics.median(v) for k, v in self.method_s.items() if v}
        jobs, started = [], []
        for tid, p in self.todo.items():
            if tid in self.ended:
                continue
            # seconds per epoch: this method's own on this entry once measured, else its declared cost x the unit
            epoch = per_method.get((p.data, p.method), p.cost / max(p.epochs, 1) * measured.get(p.data, fallback))
            run = self.running.get(tid)
            if run:  # holds a slot now, for what is left of it
                left = (p.epochs - run.epoch) * epoch
                spent = max(0.0, time.time() - run.started - run.trained_s)  # of its fixed time, already spent
                started.append(Job(tid, left + max(0.0, fixed - spent)))
            else:
                teacher = p.teacher if p.teacher in self.todo and p.teacher not in self.ended else None
                jobs.append(Job(tid, p.epochs * epoch + fixed, teacher))
        self._eta = (now, simulate(jobs, self.slots, started=started) if jobs or started else 0.0)
        return self._eta[1]

    def _prior_eta(self) -> float | None:
        """Before any epoch is measured: the plan's estimate (first loads included) less the time elapsed."""
        if self.prior is None:
            return None
        return max(0.0, self.prior.wall - self.elapsed)

    def headline(self) -> str:
        failed = self.count("failed") + self.count("skipped")
        return (f"{self.count('finished')}/{len(self.todo)} done, {len(self.running)} running, {self.pending()} pending, "
                f"{failed} failed | elapsed {clock(self.elapsed)}, ETA {clock(self.eta())}")

    def best(self) -> str:
        df = self.store.rows()
        df = df[(df.status == "finished") & df.scenario.isin(["cross-modal", "multi-modal"])]
        if df.empty:
            return "best distilled so far: " + NOTHING_YET
        df = df.assign(dataset=[data_key(d, e) for d, e in zip(df.dataset, df.entry)])
        g = df.groupby(["dataset", "scenario", "modality", "method", "variant"]).test_f1.mean().reset_index()
        parts = []
        for (d, s, m), sub in g.groupby(["dataset", "scenario", "modality"]):
            top = sub.sort_values("test_f1", ascending=False).iloc[0]
            parts.append(f"{d}/{s}/{m}: {top.method}{'+LS' if top.variant == 'lskd' else ''} {100 * top.test_f1:.1f}")
        return "best distilled so far (test F1, mean over finished seeds): " + "; ".join(parts)


def _f1(run: Running) -> str:
    return ", ".join(f"{k} {100 * v:.1f}" for k, v in run.val_f1.items()) or "-"


# ---- views ------------------------------------------------------------------------------------------
class PlainView:
    """One line per event, and a status line with the running trials every ``interval`` seconds."""

    def __init__(self, say: Callable[[str], None], interval: float = 60.0):
        self.say, self.interval = say, interval
        self.last = time.time()

    def event(self, progress: Progress, text: str) -> None:
        self.say(f"[{progress.headline()}] {text}")
        self.last = time.time()

    def note(self, text: str) -> None:
        self.say("    " + text)

    def refresh(self, progress: Progress) -> None:
        if time.time() - self.last >= self.interval and progress.running:
            self.last = time.time()
            runs = "; ".join(f"{r.name} epoch {r.epoch}/{r.epochs} (val F1 {_f1(r)})" for r in progress.running.values())
            self.say(f"[{progress.headline()}] running: {runs}")

    def close(self, progress: Progress) -> None:
        pass

    def reopen(self) -> None:
        """Before a second stage's trials (lines need no reopening)."""


class LiveView:
    """A ``rich`` live table on a terminal: the headline and one line per running trial, redrawn in
    place; finished, failed and skipped trials scroll above it as lines."""

    def __init__(self, stream: TextIO):
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream, highlight=False)
        self.live = Live(console=self.console, refresh_per_second=2, transient=True, redirect_stdout=False,
                         redirect_stderr=False)
        self.live.start()

    def _table(self, progress: Progress):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        t = Table(expand=False, box=None, pad_edge=False)
        for col, just in (("running trial", "left"), ("epoch", "right"), ("last val F1", "left"),
                          ("s/epoch", "right"), ("for", "right")):
            t.add_column(col, justify=just)
        now = time.time()
        for r in sorted(progress.running.values(), key=lambda r: r.started):
            t.add_row(r.name, f"{r.epoch}/{r.epochs}", _f1(r), "-" if r.epoch_s is None else f"{r.epoch_s:.1f}",
                      clock(now - r.started))
        return Group(Text(progress.headline(), style="bold"), t)

    def event(self, progress: Progress, text: str) -> None:
        self.console.print(f"[{clock(progress.elapsed):>7}] {text}", markup=False, highlight=False)
        self.refresh(progress)

    def note(self, text: str) -> None:
        self.console.print("    " + text, markup=False, highlight=False)

    def say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def refresh(self, progress: Progress) -> None:
        self.live.update(self._table(progress), refresh=True)

    def close(self, progress: Progress) -> None:
        self.live.stop()

    def reopen(self) -> None:
        """Before a second stage's trials: the live table again."""
        self.live.start()


def wants_live(stream: TextIO) -> bool:
    """A live view on an interactive terminal; plain lines under CI, in a pipe or file, or TERM=dumb."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and not os.environ.get("CI") and os.environ.get("TERM", "") != "dumb"
