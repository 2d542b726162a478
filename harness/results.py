"""The results store: one JSON record per trial, written atomically when the trial ends.

``<bench>/results/<trial id>.json`` with status ``finished``, ``failed`` (with the error) or
``skipped`` (with the reason). Keyed by trial id, so a rerun overwrites, never duplicates; a
finished record is final. ``rows()`` flattens it into one row per (trial, evaluated output), the
long form the tables and the Parquet file are built from.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from .io import read_json, write_json

#: test F1 per output under each model-selection rule: at the best validation epoch (the protocol,
#: ``test_f1``), at the last epoch, and the best over epochs (selected on test: an upper bound, never a result)
SELECTIONS = {"best-val": "test_f1", "last": "test_f1_last", "oracle": "test_f1_oracle"}
ROW_COLUMNS = ["dataset", "entry", "scenario", "method", "variant", "modality", "seed", "test_f1", "test_f1_last",
               "test_f1_oracle", "val_f1", "best_epoch", "oracle_epoch",
               "epochs_run", "wall_time_s", "images_per_s", "device", "config_hash", "code_version", "trial_id",
               "stage", "status", "teacher_id", "mlflow_run_id", "error", "attempts", "node_id", "host"]


class ResultsStore:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, trial_id: str) -> Path:
        return self.folder / f"{trial_id}.json"

    def get(self, trial_id: str) -> dict[str, Any] | None:
        p = self.path(trial_id)
        return read_json(p) if p.exists() else None

    def status(self, trial_id: str) -> str | None:
        rec = self.get(trial_id)
        return rec["status"] if rec else None

    def put(self, record: dict[str, Any]) -> None:
        existing = self.get(record["trial_id"])
        if existing and existing["status"] == "finished" and record["status"] != "finished":
            return  # a finished result is final
        record = {**record, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(record, self.path(record["trial_id"]))

    def records(self) -> list[dict[str, Any]]:
        return [read_json(p) for p in sorted(self.folder.glob("*.json"))]

    def rows(self) -> pd.DataFrame:
        rows = []
        for rec in self.records():
            base = {k: rec.get(k) for k in ("dataset", "entry", "scenario", "method", "variant", "seed", "epochs_run",
                                             "wall_time_s", "images_per_s", "device", "config_hash", "code_version",
                                             "trial_id", "stage", "status", "teacher_id", "mlflow_run_id", "error",
                                             "attempts", "node_id", "host")}
            outputs = rec.get("outputs") or {}
            if rec["status"] == "finished" and outputs:
                for key, out in outputs.items():
                    rows.append({**base, "modality": key, "test_f1": out["test_f1"], "val_f1": out["val_f1"],
                                 "best_epoch": out["best_epoch"], "test_f1_last": out.get("last_test_f1"),
                                 "test_f1_oracle": out.get("oracle_test_f1"), "oracle_epoch": out.get("oracle_epoch")})
            else:
                rows.append({**base, "modality": rec.get("modality")})
        df = pd.DataFrame(rows, columns=ROW_COLUMNS)
        return df

    def write_parquet(self, path: str | Path) -> Path:
        df = self.rows()
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        df.to_parquet(tmp, engine="pyarrow", index=False)
        tmp.replace(path)
        return path
