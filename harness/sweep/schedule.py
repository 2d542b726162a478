"""The order trials start in, without a stage barrier: a student starts as soon as its own teacher has
ended, never waiting for the rest of stage 1. One launch order (longest path first) is used by the
sweep's searcher and by :func:`simulate`, which gives
the makespan of a plan on N slots with or without the barrier (``benchmarks/stage_barrier.py``).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Job:
    """What the scheduler knows of a trial: its id, relative cost, the teacher it waits for, its stage."""

    id: str
    cost: float
    teacher: str | None = None
    stage: int = 1


def launch_order(jobs: Iterable[Job]) -> list[Job]:
    """Longest path first (a trial's cost plus its longest student's, the classic list-scheduling rule
    for a dependency graph): the longest trials and the teachers that unlock work start early, so no
    long trial is left to start at the end; ties keep the plan's order."""
    jobs = list(jobs)
    tail: dict[str, float] = {}
    for j in jobs:
        if j.teacher:
            tail[j.teacher] = max(tail.get(j.teacher, 0.0), j.cost)
    return sorted(jobs, key=lambda j: -(j.cost + tail.get(j.id, 0.0)))


class Ready:
    """Which planned jobs may start now: a job waits while its teacher is planned and has not ended
    (with ``barrier``, a stage-2 job also waits for every stage-1 job)."""

    def __init__(self, jobs: Sequence[Job], barrier: bool = False):
        self.pending = launch_order(jobs)
        self.unended = {j.id for j in jobs}
        self.stage1 = {j.id for j in jobs if j.stage == 1}
        self.barrier = barrier

    def ended(self, job_id: str) -> None:
        self.unended.discard(job_id)
        self.stage1.discard(job_id)

    def next(self) -> Job | None:
        """The first job in launch order that may start (removed from the pending ones), or None."""
        for i, job in enumerate(self.pending):
            if job.teacher in self.unended or (self.barrier and job.stage == 2 and self.stage1):
                continue
            return self.pending.pop(i)
        return None


def simulate(jobs: Sequence[Job], slots: int, barrier: bool = False, started: Sequence[Job] = ()) -> float:
    """Makespan of ``jobs`` (durations = costs) on ``slots`` parallel slots, list-scheduled in launch order;
    ``started`` jobs already hold slots at time 0 (their cost: what is left of them)."""
    ready = Ready([*started, *jobs], barrier)
    ready.pending = [j for j in ready.pending if j not in started]
    running: list[tuple[float, str]] = [(j.cost, j.id) for j in started]
    heapq.heapify(running)
    slots = max(slots, len(started))
    now = 0.0
    while ready.pending or running:
        while len(running) < slots:
            job = ready.next()
            if job is None:
                break
            heapq.heappush(running, (now + job.cost, job.id))
        if not running:
            raise ValueError(f"jobs wait on each other in a cycle: {[j.id for j in ready.pending][:3]}")
        now, done = heapq.heappop(running)
        ready.ended(done)
    return now
