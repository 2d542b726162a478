"""The running benchmark's view: counts from events (two running trials show as two), an ETA list-scheduled
from measured epoch times, the best-so-far line never twice in a row, plain lines off a terminal."""

from __future__ import annotations

import io

import pytest

from cmkd.harness.sweep.progress import PlainView, Planned, Progress, clock, wants_live
from cmkd.results.store import ResultRecord, ResultsStore


def _progress(tmp_path, teacher_of_d: str | None = None, interval: float = 3600.0):
    lines: list[str] = []
    todo = {t: Planned(f"trial-{t}", cost=2.0, epochs=2, data="synthetic", teacher=teacher_of_d if t == "d" else None)
            for t in "abcd"}
    return Progress(todo, ResultsStore(tmp_path / "results"), 2, PlainView(lines.append, interval)), lines


def test_counts_come_from_events_and_the_eta_from_measured_epochs(tmp_path):
    p, lines = _progress(tmp_path)
    assert p.eta() is None and "ETA ?" in p.headline()  # nothing measured yet: no guess
    p.start("a")
    p.start("b")
    assert "0/4 done, 2 running, 2 pending, 0 failed" in p.headline()
    p.epoch("a", {"epoch": 1, "seconds": 1.0, "val_f1/depth": 0.5})
    # 1 s per student epoch; a has 1 s left, b 2 s, c and d 2 s each, on 2 slots: b|c ends at 1+2=3, ... = 4 s
    assert p.eta() == pytest.approx(4.0, abs=0.05)
    assert p.running["a"].val_f1 == {"depth": 0.5} and p.running["a"].epoch == 1
    p.end("a", "finished", "finished trial-a")
    assert lines[-1].endswith("finished trial-a") and "1/4 done, 1 running, 2 pending" in lines[-1]
    p.end("b", "failed", "FAILED trial-b")
    assert "1/4 done, 0 running, 2 pending, 1 failed" in lines[-1]
    # a's time besides its epochs (here: all of it but the reported 1 s, clamped at 0) joins every later trial
    assert len(p.fixed_s) == 1 and p.fixed_s[0] >= 0


def test_the_eta_waits_for_teachers(tmp_path):
    p, _ = _progress(tmp_path, teacher_of_d="c")
    p.start("a")
    p.start("b")
    p.epoch("a", {"epoch": 1, "seconds": 1.0})
    # d starts only when its teacher c has ended: a(1) b(2) | c from 1 to 3 | d from 3 to 5
    assert p.eta() == pytest.approx(5.0, abs=0.05)


def test_best_line_is_never_printed_twice_in_a_row(tmp_path):
    p, lines = _progress(tmp_path)
    p.say_best()
    assert lines == []  # nothing distilled yet: nothing to say
    p.store.put(ResultRecord.from_dict({"trial_id": "k", "status": "finished", "dataset": "synthetic", "entry": "", "scenario": "cross-modal",
                 "method": "kdv1", "variant": "orig", "seed": 0,
                 "outputs": {"depth": {"test_f1": 0.5, "val_f1": 0.5, "best_epoch": 1}}}))
    p.say_best()
    p.say_best()
    assert lines == ["    best distilled so far (test F1, mean over finished seeds): synthetic/cross-modal/depth: kdv1 50.0"]


def test_plain_view_prints_running_trials_every_interval(tmp_path):
    p, lines = _progress(tmp_path, interval=0.0)
    p.start("a")
    p.epoch("a", {"epoch": 1, "seconds": 0.5, "val_f1/depth": 0.25})
    assert "running: trial-a epoch 1/2 (val F1 depth 25.0)" in lines[-1]


def test_live_view_only_on_an_interactive_terminal(monkeypatch):
    assert not wants_live(io.StringIO())

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert wants_live(Tty())
    monkeypatch.setenv("CI", "true")
    assert not wants_live(Tty())
    assert clock(3725) == "1:02:05" and clock(65) == "1:05" and clock(None) == "?"


def test_the_eta_adds_the_finished_trials_fixed_time(tmp_path):
    p, _ = _progress(tmp_path)
    p.start("a")
    p.start("b")
    p.epoch("a", {"epoch": 2, "seconds": 1.0})  # 1 s per epoch of cost 1
    p.running["a"].started -= 3.0  # a took 3 s: 1 s of epochs (reported), 2 s besides (start-up, files)
    p.end("a", "finished", "finished trial-a")
    assert p.fixed_s == [pytest.approx(2.0, abs=0.05)]
    # b running from now: 2 s of epochs + 2 s fixed; c and d 4 s each; 2 slots: b | c, then d after b or c = 8 s
    p._eta = (0.0, None)
    assert p.eta() == pytest.approx(8.0, abs=0.1)


def test_a_methods_own_epoch_time_replaces_its_declared_cost(tmp_path):
    lines: list[str] = []
    todo = {"a": Planned("a", cost=4.0, epochs=2, data="d", method="heavy"),  # declared: 2 student epochs per epoch
            "b": Planned("b", cost=4.0, epochs=2, data="d", method="heavy"),
            "s": Planned("s", cost=2.0, epochs=2, data="d", method="student")}
    p = Progress(todo, ResultsStore(tmp_path / "results"), 1, PlainView(lines.append))
    p.start("a")
    p.epoch("a", {"epoch": 1, "seconds": 3.0})  # heavy: 3 s per epoch measured; the unit: 1.5 s per student epoch
    # one slot: a has 1 epoch left (3 s), b 2 x 3 s (its own measured time), s 2 x 1.5 s (cost x unit) = 12 s
    assert p.eta() == pytest.approx(12.0, abs=0.05)


def test_before_any_epoch_the_eta_is_the_plan_s_estimate(tmp_path):
    from cmkd.harness.sweep.estimate import PlanTime

    p, _ = _progress(tmp_path)
    p.prior = PlanTime(wall=600.0, seconds={})
    assert p.eta() == pytest.approx(600.0, abs=2.0) and "ETA ?" not in p.headline()
    p.start("a")
    p.epoch("a", {"epoch": 1, "seconds": 1.0})
    assert p.eta() == pytest.approx(4.0, abs=0.05)  # measured epochs take over
