"""The known-answer control's comparison of two runs (``benchmarks/controls.py --same-marks``): what
cmkd-bench promises across machines is each Table 1 cell's mark, so the comparison must see a mark that
flips, a cell that one run lacks, and a mean that leaves the first run's interval."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def controls():
    spec = importlib.util.spec_from_file_location("controls", ROOT / "benchmarks" / "controls.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _marks(cells: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    """(data set, row, mean, mark) with a 95% interval of +/- 2 points and a Holm p that fits the mark."""
    return pd.DataFrame([{"dataset": d, "row": r, "mean": m, "ci95_low": m - 2, "ci95_high": m + 2,
                          "p_holm": 0.5 if mark == "ns" else 0.01, "mark": mark} for d, r, m, mark in cells])


def test_identical_runs_keep_every_mark(controls):
    run = _marks([("s:shared", "kdv1|orig", 60.0, "up"), ("s:specific", "dkd|orig", 25.0, "down"),
                  ("s:specific", "kdv1|orig", 31.0, "ns")])
    cmp = controls.compare_marks(run, run)
    assert cmp["same mark"].all() and cmp["inside interval"].all()


def test_a_flipped_mark_a_missing_cell_and_a_mean_outside_are_each_seen(controls):
    here = _marks([("s:shared", "kdv1|orig", 60.0, "up"), ("s:specific", "dkd|orig", 25.0, "down"),
                   ("s:specific", "mlkd|orig", 31.0, "ns")])
    there = _marks([("s:shared", "kdv1|orig", 63.0, "up"), ("s:specific", "dkd|orig", 26.0, "ns")])
    cmp = controls.compare_marks(here, there).set_index(["dataset", "row"])
    assert cmp.loc[("s:shared", "kdv1|orig"), "same mark"]
    assert not cmp.loc[("s:shared", "kdv1|orig"), "inside interval"]  # 63 is outside 58-62
    assert not cmp.loc[("s:specific", "dkd|orig"), "same mark"]  # down -> ns
    assert cmp.loc[("s:specific", "dkd|orig"), "inside interval"]
    assert not cmp.loc[("s:specific", "mlkd|orig"), "same mark"]  # absent from the other run


def test_equal_trial_outputs_are_counted_digit_for_digit(controls):
    """``--same-marks`` counts the outputs both runs hold (same trial id and output) that are equal to 1e-9 points."""
    here = pd.DataFrame({"trial_id": ["a", "a", "b", "c"], "modality": ["depth", "rgb", "depth", "depth"],
                         "test_f1": [0.5, 0.9, 0.61, 0.7]})
    there = pd.DataFrame({"trial_id": ["a", "a", "b", "d"], "modality": ["depth", "rgb", "depth", "depth"],
                          "test_f1": [0.5, 0.9, 0.6100619, 0.1]})
    same, n, largest = controls.same_outputs(here, there)
    assert (same, n) == (2, 3) and largest == pytest.approx(0.00619)
