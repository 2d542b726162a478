"""The second stage (``adaptive.seeds``): which Table 1 cells get more seeds, which trials that takes, the config
rules, the table's paired direction, and a real Ray/MLflow benchmark that runs both stages and resumes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_rel

from cmkd.errors import UserError
from cmkd.harness.sweep.adaptive import DECISION_FILE, Undecided, extension, undecided_cells
from cmkd.harness.sweep.bench_config import load_config
from cmkd.harness.sweep.plan import build_plan, entry_infos
from cmkd.results.cells import cells_from_results
from cmkd.results.report import seeds_notes
from cmkd.results.store import ResultsStore

TINY = ["datasets=[{name='synthetic', options={n_samples=120, image_size=16}}]", "scenarios=['cross-modal']",
        "methods=['kdv1', 'dkd']", "lskd=[false]", "train.epochs=1", "train.width=8", "keep_weights='teachers'"]


#: the second stage as a user turns it on (the quick profile runs without one since it trains in float64: its marks
#: then agree across CPUs by themselves, and its ten minutes hold the first stage only)
SECOND = ["adaptive.seeds=[10, 11, 12, 13, 14, 15, 16, 17, 18, 19]", "adaptive.band=[0.005, 0.5]"]


def _tiny(seeds="[0, 1]", more="[2]", band="[1e-12, 1.0]"):
    return load_config("quick", overrides=[*TINY, f"seeds={seeds}", f"adaptive.seeds={more}", f"adaptive.band={band}"])


def _rows(f1: dict[str, list[float]], seeds: list[int]) -> pd.DataFrame:
    """Finished results rows of the depth column of one synthetic entry: a STUDENT, a teacher, distilled rows."""
    rows = []
    for method, values in f1.items():
        for seed, v in zip(seeds, values):
            scenario = "single" if method in ("student", "teacher") else "cross-modal"
            rows.append({"status": "finished", "dataset": "synthetic", "entry": "", "scenario": scenario,
                         "method": "student" if method == "teacher" else method, "variant": "" if scenario == "single" else "orig",
                         "modality": "rgb" if method == "teacher" else "depth", "seed": seed, "arch": "resnet18",
                         "teacher_arch": "resnet18", "pairs": "", "test_f1": v, "trial_id": f"{method}{seed}"})
    return pd.DataFrame(rows)


def test_undecided_cells_are_those_whose_holm_p_at_the_first_seeds_lies_in_the_band():
    rng = np.random.default_rng(0)
    seeds = list(range(12))
    student = 0.5 + 0.03 * rng.standard_normal(12)
    f1 = {"student": student, "teacher": np.full(12, 0.9),
          "kdv1": student + 0.08 + 0.01 * rng.standard_normal(12),   # clear gain
          "dkd": student + 0.015 + 0.03 * rng.standard_normal(12),   # near the line
          "ctkd": student + 0.03 * rng.standard_normal(12)}          # nothing
    rows = _rows(f1, seeds)
    cfg = load_config("quick", overrides=[*TINY, "seeds=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]", "adaptive.seeds=[10, 11]",
                                          "adaptive.band=[0.005, 0.3]"])
    # the Holm p of each cell, computed here independently of the table code, on the first ten seeds only
    raw = {m: ttest_rel(np.asarray(f1[m][:10]), student[:10]).pvalue for m in ("kdv1", "dkd", "ctkd")}
    order = sorted(raw, key=raw.get)
    holm, running = {}, 0.0
    for rank, m in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[m]))
        holm[m] = running
    expected = {f"{m}|orig" for m, p in holm.items() if 0.005 <= p < 0.3}
    got = undecided_cells(rows, cfg)
    assert {c.row for c in got} == expected and expected  # the data make at least one cell undecided
    assert {c.row: round(c.p_holm, 12) for c in got} == {f"{m}|orig": round(holm[m], 12) for m in holm
                                                         if f"{m}|orig" in expected}
    assert all(c.n == 10 and c.dataset == "synthetic" and c.column == "depth" for c in got)
    # seeds 10-11 in the rows do not move the decision (a resumed run decides the same)
    assert undecided_cells(rows[rows.seed < 10], cfg) == got


def test_extension_runs_the_cell_its_columns_student_and_their_teachers_for_the_second_seeds():
    cfg = _tiny(seeds="[0]", more="[1, 2]")
    infos = entry_infos(cfg)
    cell = Undecided("synthetic", "depth", "dkd|orig", 0.05, 1)
    more = extension(cfg, infos, [cell])
    names = sorted(p.name for p in more)
    assert names == sorted(f"synthetic-{m}-s{s}" for s in (1, 2)
                           for m in ("student-depth", "student-rgb", "dkd-orig-depth-xm"))
    assert {p.spec.seed for p in more} == {1, 2}
    ids = {p.trial_id for p in more}
    assert all(p.teacher_id in ids for p in more if p.teacher_id)
    assert not any(p.spec.method == "kdv1" for p in more)  # a settled cell keeps its first seeds
    assert extension(cfg, infos, []) == []


@pytest.mark.parametrize("override, message", [
    ("adaptive.seeds=[0, 10]", "adaptive.seeds repeats seed 0 of seeds"),
    ("adaptive.band=[0.3, 0.1]", "adaptive.band is [low, high] with 0 < low < high <= 1"),
    ("adaptive.band=[0, 0.3]", "adaptive.band is [low, high] with 0 < low < high <= 1"),
    ("adaptive.seeds=[10, 10]", "adaptive.seeds must be distinct integers"),
    ("adaptive.seeds=['a']", "every entry of adaptive.seeds must be an integer"),
    ("adaptive.sedes=[10]", "unknown adaptive key 'sedes' (did you mean 'seeds'?)"),
    ("scenarios=['multi-modal']", "adaptive.seeds extends Table 1's cells"),
])
def test_bad_second_stage_settings_are_one_line(override, message):
    with pytest.raises(UserError) as err:
        load_config("quick", overrides=["adaptive.seeds=[10, 11]", override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_chosen_seeds_drop_a_profiles_second_stage_unless_it_is_chosen_too(monkeypatch):
    import cmkd.harness.sweep.bench_config as bench_config

    quick = bench_config.profile_dict("quick")
    assert "adaptive" not in quick  # the default trains in float64: its marks agree across CPUs without one
    monkeypatch.setattr(bench_config, "profile_dict", lambda name: {**quick, "adaptive": {"seeds": [10, 11, 12]}})
    assert load_config("quick").adaptive.seeds == (10, 11, 12)
    assert load_config("quick", overrides=["seeds=[0, 1]"]).adaptive.seeds == ()
    assert load_config("quick", overrides=["seeds=[0, 1]", "adaptive.seeds=[5]"]).adaptive.seeds == (5,)
    monkeypatch.undo()
    # no second stage: the hash the same config had before the second stage (and train.precision) existed (quick
    # at seeds 0-1 in float32, run with commit 506c699); a second stage is part of what the benchmark is
    old = ["seeds=[0, 1]", "train.precision='float32'", "train.channels_last=false"]
    assert load_config("quick", overrides=old).config_hash() == "72131a9352"
    assert load_config("quick", overrides=SECOND).config_hash() != load_config("quick").config_hash()


def test_a_cell_with_more_seeds_is_tested_and_pointed_on_the_seeds_both_have():
    # STUDENT has 4 seeds, the method 2: the arrow and p use seeds 0-1 only, where the method is below STUDENT
    rows = _rows({"student": [0.60, 0.62, 0.20, 0.22], "teacher": [0.9] * 4, "kdv1": [0.55, 0.58]}, [0, 1, 2, 3])
    rows = rows[~((rows.method == "kdv1") & (rows.seed > 1))]
    from cmkd.results.tables import build_table

    t = build_table(cells_from_results(rows), 1)
    col = ("synthetic", "depth")
    cell = t.cells[("kdv1|orig", col)]
    assert t.cells[("STUDENT", col)].mean == 41.0 and cell.mean == 56.5  # above STUDENT's mean over all its seeds
    assert cell.diff == pytest.approx(-4.5) and cell.arrow == "↓"
    notes = seeds_notes(cells_from_results(rows), (1,))
    assert len(notes) == 1 and "kdv1|orig @ Synthetic/depth (2)" in notes[0]


def test_a_benchmark_runs_both_stages_records_its_decision_and_resumes_without_rerunning(ray_session, tmp_path):
    from cmkd.harness.sweep.tune import run_bench

    cfg = _tiny()
    first = build_plan(cfg)
    lines: list[str] = []
    summary = run_bench(cfg, out=tmp_path / "b", say=lines.append)
    decision = json.loads((tmp_path / "b" / DECISION_FILE).read_text())
    assert decision["first_seeds"] == [0, 1] and decision["more_seeds"] == [2] and decision["band"] == [1e-12, 1.0]
    cells = [Undecided(c["dataset"], c["column"], c["row"], c["p_holm_first"], c["n_first"]) for c in decision["cells"]]
    assert {c.row for c in cells} == {"kdv1|orig", "dkd|orig"}  # band [1e-12, 1]: every cell not settled
    more = extension(cfg, entry_infos(cfg), cells)
    assert sorted(decision["trials"]) == sorted(p.name for p in more) and len(more) == 4
    assert summary.planned == summary.finished == len(first) + len(more) and summary.failed == 0
    store = ResultsStore(tmp_path / "b" / "results")
    assert sorted(r.trial_id for r in store.records()) == sorted(p.trial_id for p in first + more)
    assert any(line.startswith("second stage: 2 Table 1 cell(s) with Holm p in [1e-12, 1] at seeds 0,1") for line in lines)
    # the same command again: nothing runs, the decision is the same, no record is set aside as superseded
    again = run_bench(cfg, out=tmp_path / "b", say=lambda s: None)
    assert again.finished == summary.finished and json.loads((tmp_path / "b" / DECISION_FILE).read_text()) == decision
    assert not (tmp_path / "b" / "results" / ".superseded").exists()
    from cmkd.results.report import stats_frame

    st = stats_frame(store.rows(), tables=(1,)).set_index("row")
    assert st.loc["kdv1|orig", "n"] == st.loc["STUDENT", "n"] == 3


def test_the_dry_run_states_the_second_stage_as_a_range():
    from cmkd.harness.sweep.tune import dry_run

    lines: list[str] = []
    plan = dry_run(load_config("quick", overrides=SECOND), say=lines.append, cpus=2)
    assert len(plan) == 160  # the first stage
    last = lines[-1]
    assert last.startswith("second stage: seeds 10-19 for the Table 1 cells whose Holm p at seeds 0-9 lies in "
                           "[0.005, 0.5): from none to 160 more trials (if every cell needs them, both stages: ")


def test_the_default_band_keeps_the_false_positive_rate_of_a_fixed_design():
    """The profile's band, simulated by benchmarks/adaptive_design.py: a cell with no effect is called significant
    at most about as often as with ten seeds (alpha 0.05), and a real effect more often than with ten seeds."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "adaptive_design.py"
    spec = importlib.util.spec_from_file_location("adaptive_design", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    cfg = load_config("quick", overrides=SECOND)
    n1, n2, band = len(cfg.seeds), len(cfg.adaptive.seeds), cfg.adaptive.band
    null = script.rates(0.0, n1, n2, band, 200_000, np.random.default_rng(2))
    assert null[0] <= 0.0515 and abs(null[1] - 0.05) < 0.003  # the fixed design's own rate, as a check of the draw
    real = script.rates(0.8, n1, n2, band, 50_000, np.random.default_rng(3))
    assert real[0] > real[1] + 0.2  # the second stage finds a real effect far more often than ten seeds do
