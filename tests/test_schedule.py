"""The launch order and the barrier-free schedule, on hand-computed examples (the sweep's use of it is
tested on a real smoke benchmark in test_bench.py)."""

from __future__ import annotations

import pytest

from cmkd.harness.sweep.schedule import Job, Ready, launch_order, simulate

# a teacher T with two students, one long standalone trial D (DisCoM-KD-like), on two slots
JOBS = [Job("S1", 1.0, "T", 2), Job("S2", 1.0, "T", 2), Job("T", 1.0), Job("D", 3.0)]


def test_longest_path_first():
    assert [j.id for j in launch_order(JOBS)] == ["D", "T", "S1", "S2"]  # T's path: 1 + 1 = 2 < D's 3


def test_students_start_when_their_own_teacher_ends_not_when_stage_one_does():
    # barrier: D and T start at 0; the students wait for D (ends at 3): makespan 4
    assert simulate(JOBS, 2, barrier=True) == pytest.approx(4.0)
    # no barrier: S1 starts at 1 beside D, S2 at 2: makespan 3
    assert simulate(JOBS, 2, barrier=False) == pytest.approx(3.0)
    assert simulate(JOBS, 1) == pytest.approx(6.0)


def test_ready_holds_a_student_back_until_its_teacher_ends():
    ready = Ready(JOBS)
    assert ready.next().id == "D" and ready.next().id == "T"
    assert ready.next() is None  # both students wait for T
    ready.ended("D")
    assert ready.next() is None
    ready.ended("T")
    assert {ready.next().id, ready.next().id} == {"S1", "S2"} and not ready.pending


def test_a_teacher_that_is_not_planned_has_already_ended():
    assert Ready([Job("S", 1.0, "finished-earlier", 2)]).next().id == "S"
