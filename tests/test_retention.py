"""keep_weights = "best": teachers keep everything; per table cell only the seed best on validation keeps its
weights (ties: the lowest seed), each output on its own; programs and sidecars go with their weights."""

from __future__ import annotations

from cmkd.harness.sweep.retention import BEST, kept_models, prune
from cmkd.results.store import ResultRecord, ResultsStore


def _trial(store: ResultsStore, root, tid: str, method: str, seed: int, val: dict[str, float], scenario="cross-modal"):
    folder = root / tid
    folder.mkdir(parents=True)
    for key in val:
        for name in (f"best_{key}.pt", f"model_{key}.pt2", f"model_{key}.json"):
            (folder / name).write_bytes(b"x" * 1024)
    store.put(ResultRecord.from_dict({"trial_id": tid, "status": "finished", "dataset": "synthetic", "entry": "", "scenario": scenario,
               "method": method, "variant": "orig", "seed": seed, "out_dir": str(folder),
               "outputs": {k: {"val_f1": v, "test_f1": v} for k, v in val.items()}}))
    return folder


def test_only_each_cells_best_validation_seed_keeps_its_weights(tmp_path):
    store = ResultsStore(tmp_path / "results")
    runs = tmp_path / "runs"
    kd = [_trial(store, runs, f"kd{s}", "kdv1", s, {"depth": v}) for s, v in enumerate([0.4, 0.6, 0.6])]
    other_scenario = _trial(store, runs, "kdmm", "kdv1", 0, {"depth": 0.1}, scenario="multi-modal")
    disco = [_trial(store, runs, f"dc{s}", "discomkd", s, val, scenario="single")
             for s, val in enumerate([{"rgb": 0.9, "depth": 0.2}, {"rgb": 0.5, "depth": 0.3}])]
    teachers = [_trial(store, runs, f"st{s}", "student", s, {"rgb": 0.5 + s / 10}, scenario="single") for s in range(2)]
    prune(store)
    prune(store)  # idempotent: run after every trial
    assert [(f / "best_depth.pt").exists() for f in kd] == [False, True, False]  # tie 0.6: the lower seed
    assert not (kd[0] / "model_depth.json").exists() and not (kd[0] / "model_depth.pt2").exists()
    assert (other_scenario / "best_depth.pt").exists()  # another cell
    assert [(f / "best_rgb.pt").exists() for f in disco] == [True, False]
    assert [(f / "best_depth.pt").exists() for f in disco] == [False, True]  # each output on its own
    assert all((f / "best_rgb.pt").exists() for f in teachers)  # teachers keep every seed
    models = kept_models(store)
    assert len(models) == 6 and set(models[models.why == "teacher"].trial_id) == {"st0", "st1"}
    assert set(models[models.why == BEST].trial_id) == {"kd1", "kdmm", "dc0", "dc1"}
    assert models.export.str.startswith("cmkd export ").all()
