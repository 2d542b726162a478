"""Which trained weights a benchmark keeps on disk.

A ResNet-18's weights are ~45 MB whatever the image size, so a benchmark keeps by default
(``keep_weights = "best"``): every trial of a method that teaches (its students load it; these are also
the STUDENT rows), and per table cell (data set entry, scenario, method, variant, output) the seed
best on validation (ties: the lowest seed). Every other trial's ``best_<output>.pt`` is removed, with
any exported program and sidecar of that output. ``"all"`` keeps everything, ``"teachers"`` only the
teachers. ``cmkd export TRIAL_DIR`` turns kept weights into a deployable model.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cmkd.results.store import ResultRecord, ResultsStore

KEEP_WEIGHTS = ("best", "teachers", "all")
MODELS_FILE = "models.csv"
BEST = "best validation seed of its cell"


def drop_weights(folder: str | Path, keys: list[str] | None = None) -> None:
    """Remove the best weights, exported program and sidecar of ``keys`` (every output when None)."""
    folder = Path(folder)
    if keys is None:
        keys = sorted({p.stem[len("best_"):] for p in folder.glob("best_*.pt")}
                      | {p.stem[len("model_"):] for p in folder.glob("model_*.pt2")}
                      | {p.stem[len("model_"):] for p in folder.glob("model_*.json")})
    for k in keys:
        for name in (f"best_{k}.pt", f"model_{k}.pt2", f"model_{k}.json"):
            (folder / name).unlink(missing_ok=True)


def _teaches(method: str) -> bool:
    from cmkd.methods import METHODS

    cls = METHODS.get(method)
    return cls is not None and cls.teaches is not None


def cell_winners(records: list[ResultRecord]) -> dict[tuple, tuple[ResultRecord, str]]:
    """Per table cell of the non-teaching trials, the finished record best on validation (and its output)."""
    best: dict[tuple, tuple[ResultRecord, str]] = {}
    for rec in records:
        if rec.status != "finished" or _teaches(rec.method):
            continue
        for key, out in rec.outputs.items():
            cell = (rec.dataset, rec.entry, rec.scenario, rec.method, rec.variant, key, rec.arch, rec.teacher_arch)
            score = (out["val_f1"], -int(rec.seed))
            if cell not in best or score > (best[cell][0].outputs[key]["val_f1"], -int(best[cell][0].seed)):
                best[cell] = (rec, key)
    return best


def prune(store: ResultsStore) -> None:
    """Apply ``keep_weights = "best"`` to what has finished so far (idempotent: run after every trial)."""
    records = store.records()
    winners = {(rec.trial_id, key) for rec, key in cell_winners(records).values()}
    for rec in records:
        if rec.status != "finished" or _teaches(rec.method) or not rec.out_dir:
            continue
        losers = [k for k in rec.outputs if (rec.trial_id, k) not in winners]
        if losers:
            drop_weights(rec.out_dir, losers)


def kept_models(store: ResultsStore) -> pd.DataFrame:
    """One row per kept output's weights on disk: what ``cmkd export`` can turn into a deployable model."""
    rows = []
    records = store.records()
    winners = {(rec.trial_id, key) for rec, key in cell_winners(records).values()}
    for rec in records:
        if rec.status != "finished" or not rec.out_dir:
            continue
        for key, out in rec.outputs.items():
            weights = Path(rec.out_dir) / f"best_{key}.pt"
            if weights.is_file():
                rows.append({"dataset": rec.dataset, "entry": rec.entry, "scenario": rec.scenario,
                             "method": rec.method, "variant": rec.variant, "output": key,
                             "seed": rec.seed, "val_f1": out["val_f1"], "test_f1": out["test_f1"],
                             "why": "teacher" if _teaches(rec.method) else (
                                 BEST if (rec.trial_id, key) in winners else "kept (keep_weights = \"all\")"),
                             "megabytes": round(weights.stat().st_size / 2**20, 1), "trial_id": rec.trial_id,
                             "folder": rec.out_dir, "export": f"cmkd export {rec.out_dir} --output {key}"})
    cols = ["dataset", "entry", "scenario", "method", "variant", "output", "seed", "val_f1", "test_f1", "why",
            "megabytes", "trial_id", "folder", "export"]
    return pd.DataFrame(rows, columns=cols).sort_values(["dataset", "entry", "scenario", "method", "variant", "output"],
                                                        kind="stable").reset_index(drop=True)
