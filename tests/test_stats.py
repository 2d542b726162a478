"""Statistics files and the selection-bias report, against scipy and hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from cmkd.errors import UserError
from cmkd.harness.engine.trial import selection_summary
from cmkd.results.stats import holm, paired_p, t_interval
from cmkd.results.cells import cells_from_results
from cmkd.results.report import stats_frame, write_report
from cmkd.results.tables import build_table


def test_t_interval_matches_scipy():
    x = [61.2, 64.8, 59.9, 66.1, 63.0]
    lo, hi = t_interval(x)
    ref = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert (lo, hi) == pytest.approx(ref, abs=1e-12)
    assert t_interval([1.0]) is None


def test_paired_p_matches_scipy_and_handles_constant_shifts():
    a = pd.Series([60.0, 64.0, 61.0, 70.0], index=[0, 1, 2, 3])
    b = pd.Series([55.0, 63.0, 58.0, 61.0, 99.0], index=[0, 1, 2, 3, 4])  # seed 4 has no pair: ignored
    assert paired_p(a, b) == pytest.approx(sps.ttest_rel(a.values, b.values[:4]).pvalue)
    assert paired_p(a, a + 2.0) == 0.0 and paired_p(a, a) == 1.0
    assert paired_p(a.iloc[:1], b) is None


def test_holm_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.4]) == [pytest.approx(0.8), None, pytest.approx(0.8)]
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def _rows(history: bool = True) -> pd.DataFrame:
    """Three seeds; STUDENT on depth, two KD rows, a TEACHER; per-selection test F1 known."""
    rows = []

    def add(method, modality, f1s, scenario="single", variant="", last=None, oracle=None):
        for seed, f1 in enumerate(f1s):
            row = {"dataset": "synthetic", "entry": "", "scenario": scenario, "method": method, "variant": variant,
                   "modality": modality, "seed": seed, "test_f1": f1, "val_f1": f1, "best_epoch": 2, "epochs_run": 3,
                   "wall_time_s": 1.0, "images_per_s": 1.0, "device": "cpu", "config_hash": "h", "code_version": "0",
                   "trial_id": f"{method}{modality}{variant}{scenario}{seed}", "stage": 1, "status": "finished",
                   "teacher_id": None, "mlflow_run_id": None, "error": None}
            if history:
                row.update(test_f1_last=(last or f1s)[seed], test_f1_oracle=(oracle or f1s)[seed], oracle_epoch=3)
            rows.append(row)

    add("student", "rgb", [0.90, 0.92, 0.94])
    add("student", "depth", [0.50, 0.55, 0.60], last=[0.45, 0.50, 0.55], oracle=[0.52, 0.58, 0.61])
    add("kdv1", "depth", [0.60, 0.66, 0.69], "cross-modal", "orig", last=[0.60, 0.60, 0.60], oracle=[0.70, 0.70, 0.70])
    add("dkd", "depth", [0.51, 0.57, 0.60], "cross-modal", "orig")
    return pd.DataFrame(rows)


def test_stats_frame_against_scipy_and_holm():
    rows = _rows()
    st = stats_frame(rows, (1,))
    kd = st[(st.row == "kdv1|orig") & (st.column == "depth")].iloc[0]
    x = np.array([60.0, 66.0, 69.0])
    s = np.array([50.0, 55.0, 60.0])
    assert kd.n == 3 and kd["mean"] == pytest.approx(x.mean()) and kd["std"] == pytest.approx(x.std(ddof=1))
    assert (kd.ci95_low, kd.ci95_high) == pytest.approx(sps.t.interval(0.95, 2, loc=x.mean(), scale=sps.sem(x)))
    p_kd = sps.ttest_rel(x, s).pvalue
    p_dkd = sps.ttest_rel([51.0, 57.0, 60.0], s).pvalue
    assert kd.p_vs_student == pytest.approx(p_kd)
    expected = dict(zip(("kd", "dkd"), holm([p_kd, p_dkd])))
    assert kd.p_holm == pytest.approx(expected["kd"])
    dkd = st[st.row == "dkd|orig"].iloc[0]
    assert dkd.p_holm == pytest.approx(expected["dkd"]) and bool(dkd.significant) == (expected["dkd"] < 0.05)
    # selection gaps: the same cell under the last epoch and the oracle, minus the protocol's
    assert kd.mean_last == pytest.approx(60.0) and kd.gap_last == pytest.approx(60.0 - x.mean())
    assert kd.mean_oracle == pytest.approx(70.0) and kd.gap_oracle == pytest.approx(70.0 - x.mean())
    student = st[(st.row == "STUDENT") & (st.column == "depth")].iloc[0]
    assert math.isnan(student.p_vs_student) or student.p_vs_student is None


def test_ns_marks_use_the_holm_corrected_p():
    rows = _rows()
    t = build_table(cells_from_results(rows), 1)
    for key in ("kdv1|orig", "dkd|orig"):
        c = t.cells[(key, ("synthetic", "depth"))]
        assert c.p_holm >= c.p_value and c.significant == (c.p_holm < 0.05)


def test_selection_renders_last_and_oracle_and_refuses_old_results():
    rows = _rows()
    for sel, kd in (("best-val", 65.0), ("last", 60.0), ("oracle", 70.0)):
        cells = cells_from_results(rows, sel)
        t = build_table(cells, 1)
        assert t.cells[("kdv1|orig", ("synthetic", "depth"))].mean == pytest.approx(kd)
    old = _rows(history=False)
    with pytest.raises(UserError, match="no last-epoch or oracle test F1"):
        cells_from_results(old, "oracle")
    with pytest.raises(UserError, match="unknown selection"):
        cells_from_results(rows, "best")


def test_stats_files_are_written(tmp_path):
    rows = _rows()
    out = write_report(cells_from_results(rows), tmp_path / "t", rows, tables=(1, 2), echo=lambda s: None)
    csv = pd.read_csv(out / "stats.csv")
    pq = pd.read_parquet(out / "stats.parquet")
    assert len(csv) == len(pq) > 0
    assert {"mean", "std", "n", "ci95_low", "ci95_high", "p_vs_student", "p_holm", "gap_last", "gap_oracle"} <= set(csv.columns)
    assert "Holm" in (out / "tables.md").read_text()


def test_selection_summary_on_a_hand_made_history():
    history = [{"epoch": 1, "test_f1/depth": 0.40}, {"epoch": 2, "test_f1/depth": 0.62},
               {"epoch": 3, "test_f1/depth": 0.62}, {"epoch": 4, "test_f1/depth": 0.55}]
    assert selection_summary(history, "depth") == {"last_test_f1": 0.55, "oracle_test_f1": 0.62, "oracle_epoch": 2}
