"""What a benchmark run was, beside what it computed: ``<bench>/run.json``.

The records say what each trial gave; they cannot say what was planned but never ran, how long the whole
run took, or on which machine and commit it ran. ``cmkd bench`` writes those facts here at the end of
every invocation, finished or interrupted, so that a report made later (on another machine, with another
checkout) states the run's own provenance rather than the reader's.

The file holds ``plan`` (the last invocation's planned trials: id, name, data set, method) and
``sessions`` (one entry per invocation: when, how long, which commit, which machine, the trial counts).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

RUN_FILE = "run.json"


@dataclass(frozen=True)
class Machine:
    """The machine a run's numbers came from: float rounding, and so the digits, depend on it."""

    cpu: str
    isa: str  # the kernels torch chose (ATEN_CPU_CAPABILITY): AVX512, AVX2, DEFAULT...
    cores: int
    gpu: str
    threads: int  # torch threads per trial
    host: str
    torch: str

    def line(self) -> str:
        return (f"{self.cpu} ({self.isa} kernels), {self.cores} cores, GPU {self.gpu or 'none'}, "
                f"{self.threads} thread(s) per trial, torch {self.torch}, host {self.host}")


@dataclass(frozen=True)
class Session:
    """One ``cmkd bench`` invocation on a folder."""

    started: str
    ended: str
    wall_s: float
    commit: str
    dirty: bool | None
    machine: Machine
    planned: int
    finished: int
    failed: int
    skipped: int
    diverged: int
    interrupted: bool
    experiment: str = ""
    experiment_id: str = ""
    tracking_uri: str = ""


@dataclass(frozen=True)
class PlannedEntry:
    trial_id: str
    name: str
    dataset: str
    method: str


@dataclass
class RunLog:
    plan: list[PlannedEntry] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)


def this_machine(threads: int) -> Machine:
    import torch

    return Machine(cpu=cpu_model(), isa=torch.backends.cpu.get_cpu_capability(), cores=os.cpu_count() or 1,
                   gpu=gpu_names(torch.cuda.device_count()), threads=int(threads), host=platform.node(),
                   torch=torch.__version__)


def gpu_names(count: int) -> str:
    """The GPUs' names from nvidia-smi: asking torch would open a CUDA context in the driver, on a GPU the
    trials need."""
    import subprocess

    if not count:
        return ""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
        names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
    except (OSError, subprocess.SubprocessError):
        names = []
    return ", ".join(names) if names else f"{count} CUDA device(s)"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; platform's answer elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def code_commit() -> tuple[str, bool | None]:
    """The installed code's git commit and whether tracked files differ from it ("" and None outside git)."""
    import subprocess

    import cmkd

    here = Path(cmkd.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return "", None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return commit.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "", None


def read_run_log(folder: Path) -> RunLog | None:
    """The folder's run log; None when there is none or it does not parse (a report then says so)."""
    from cmkd.harness.engine.corrupt import PARSE_ERRORS, read_json_file

    path = Path(folder) / RUN_FILE
    if not path.is_file():
        return None
    try:
        d = read_json_file(path)
        sessions = [Session(**{**s, "machine": Machine(**s["machine"])}) for s in d.get("sessions", [])]
        return RunLog([PlannedEntry(**p) for p in d.get("plan", [])], sessions)
    except (*PARSE_ERRORS, TypeError, KeyError):
        return None


def record_session(folder: Path, plan: list, session: Session) -> None:
    """Append this invocation to ``run.json`` (written atomically; an unreadable old log starts anew)."""
    from cmkd.harness.engine.io import write_json

    log = read_run_log(folder) or RunLog()
    log.plan = [PlannedEntry(p.trial_id, p.name, p.data_key, p.spec.method) for p in plan]
    log.sessions.append(session)
    write_json({"plan": [asdict(p) for p in log.plan], "sessions": [asdict(s) for s in log.sessions]},
               Path(folder) / RUN_FILE)


def now(at: float | None = None) -> str:
    """Local time as the run log writes it (``at``: a ``time.time()`` value; default now)."""
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(at))
