"""One data set listed twice (the quick profile's two regimes): labels, plan, results and table columns;
and every trial's per-epoch test F1 (the selection-bias record) from a real training run."""

from __future__ import annotations

import pandas as pd
import pytest

from cmkd.errors import UserError
from cmkd.harness.engine.spec import TrainConfig, TrialSpec
from cmkd.harness.engine.trial import run_trial
from cmkd.harness.sweep.bench_config import load_config
from cmkd.harness.sweep.plan import build_plan
from cmkd.results.cells import cells_from_results
from cmkd.results.render import header, render
from cmkd.results.tables import build_table

TWO = ("datasets=[{name='synthetic', label='shared', options={n_samples=120, image_size=16, shared=1.0}}, "
       "{name='synthetic', label='specific', options={n_samples=120, image_size=16, shared=0.0}}]")


def test_two_entries_of_one_data_set_plan_apart():
    cfg = load_config("smoke", overrides=[TWO, "methods=['kdv1']", "scenarios=['cross-modal']", "lskd=[false]",
                                                "ablations=[]"])
    plan = build_plan(cfg)
    by_entry = {e: [p for p in plan if p.entry == e] for e in ("shared", "specific")}
    assert len(by_entry["shared"]) == len(by_entry["specific"]) == 3  # student rgb, student depth, kdv1
    assert not {p.trial_id for p in by_entry["shared"]} & {p.trial_id for p in by_entry["specific"]}
    for p in by_entry["shared"]:  # a student's teacher is planned from its own entry
        assert p.name.startswith("synthetic-shared-") and p.data_key == "synthetic:shared"
        if p.teacher_id:
            assert p.teacher_id in {q.trial_id for q in by_entry["shared"]}


@pytest.mark.parametrize("override, message", [
    ("datasets=[{name='synthetic'}, {name='synthetic', options={shared=1.0}}]", "listed twice"),
    ("datasets=[{name='synthetic', label='a'}, {name='synthetic', label='b'}]", "are the same data"),
    ("datasets=[{name='synthetic', label='Shared Regime'}]", "lower-case letters"),
    ("datasets=[{name='synthetic', label=3}]", "label"),
    ("datasets=[{name='synthetic', colour='x'}]", "valid: name, root, options, label"),
])
def test_bad_entries_are_refused(override, message):
    with pytest.raises(UserError, match=message):
        load_config("smoke", overrides=[override])


def _rows() -> pd.DataFrame:
    rows = []
    for entry, kd in (("shared", 0.7), ("specific", 0.4)):
        for seed in range(2):
            for method, modality, scenario, f1 in (("student", "rgb", "single", 0.9), ("student", "depth", "single", 0.5),
                                                   ("kdv1", "depth", "cross-modal", kd)):
                rows.append({"dataset": "synthetic", "entry": entry, "scenario": scenario, "method": method,
                             "variant": "orig" if method == "kdv1" else "", "modality": modality, "seed": seed,
                             "test_f1": f1 + 0.01 * seed, "status": "finished", "trial_id": f"{entry}{method}{modality}{seed}",
                             "teacher_id": None, "wall_time_s": 1.0, "images_per_s": 1.0, "config_hash": "h"})
    return pd.DataFrame(rows)


def test_entries_are_columns_of_their_own():
    t1 = build_table(cells_from_results(_rows()), 1)
    assert t1.columns == [("synthetic:shared", "depth"), ("synthetic:specific", "depth")]
    assert t1.cells[("kdv1|orig", ("synthetic:shared", "depth"))].mean == pytest.approx(70.5)
    assert t1.cells[("kdv1|orig", ("synthetic:specific", "depth"))].mean == pytest.approx(40.5)
    assert header(t1, "terminal")[2:] == ["Synthetic (shared) RGB->DEPTH", "Synthetic (specific) RGB->DEPTH"]
    assert "Synthetic (specific)" in render(t1, "markdown")


def test_every_epoch_records_test_f1_and_the_result_its_last_and_oracle(tmp_path):
    spec = TrialSpec(dataset="synthetic", method="student", modality="depth", seed=0,
                     dataset_options={"n_samples": 120, "image_size": 16}, train=TrainConfig(epochs=3, batch_size=32, lr=1e-3))
    r = run_trial(spec, runs_root=tmp_path)
    out = r.outputs["depth"]
    per_epoch = [h["test_f1/depth"] for h in r.history]
    assert len(per_epoch) == 3
    assert out["last_test_f1"] == per_epoch[-1]
    assert out["oracle_test_f1"] == max(per_epoch) and per_epoch[out["oracle_epoch"] - 1] == max(per_epoch)
    assert out["test_f1"] == per_epoch[out["best_epoch"] - 1]  # the protocol's number is that epoch's test F1
    assert out["oracle_test_f1"] >= out["test_f1"]
