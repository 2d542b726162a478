"""The results store: one JSON record per trial, written atomically when the trial ends.

``<bench>/results/<trial id>.json`` with status ``finished``, ``failed`` (with the error) or
``skipped`` (with the reason). Keyed by trial id, so a rerun overwrites, never duplicates; a
finished record is final. ``rows()`` flattens it into one row per (trial, evaluated output), the
long form the tables and the Parquet file are built from.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from .io import read_json, write_json

#: test F1 per output under each model-selection rule: at the best validation epoch (the protocol,
#: ``test_f1``), at the last epoch, and the best over epochs (selected on test: an upper bound, never a result)
SELECTIONS = {"best-val": "test_f1", "last": "test_f1_last", "oracle": "test_f1_oracle"}
ROW_COLUMNS = ["dataset", "entry", "scenario", "method", "variant", "lskd", "ablation", "modality", "seed", "test_f1",
               "test_f1_last",
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
        """One row per (trial, evaluated output): the ``ROW_COLUMNS``, then ``opt.<name>`` per resolved
        method option (a method without that option: missing)."""
        rows = []
        for rec in self.records():
            base = {k: rec.get(k) for k in ("dataset", "entry", "scenario", "method", "variant", "seed", "epochs_run",
                                             "wall_time_s", "images_per_s", "device", "config_hash", "code_version",
                                             "trial_id", "stage", "status", "teacher_id", "mlflow_run_id", "error",
                                             "attempts", "node_id", "host")}
            opts = options_of(rec)
            base["lskd"] = opts.get("lskd")  # None: the method has no LSKD switch
            base["ablation"] = opts.get("ablation") or ""
            base.update({f"opt.{k}": v for k, v in sorted(opts.items())})
            outputs = rec.get("outputs") or {}
            if rec["status"] == "finished" and outputs:
                for key, out in outputs.items():
                    rows.append({**base, "modality": key, "test_f1": out["test_f1"], "val_f1": out["val_f1"],
                                 "best_epoch": out["best_epoch"], "test_f1_last": out.get("last_test_f1"),
                                 "test_f1_oracle": out.get("oracle_test_f1"), "oracle_epoch": out.get("oracle_epoch")})
            else:
                rows.append({**base, "modality": rec.get("modality")})
        df = pd.DataFrame(rows)
        opt_cols = sorted(c for c in df.columns if c.startswith("opt."))
        df = df.reindex(columns=ROW_COLUMNS + opt_cols)
        for c in opt_cols:
            df[c] = _one_type(df[c])
        df["lskd"] = df["lskd"].astype("boolean")
        return df

    def history(self) -> pd.DataFrame:
        """Per-epoch history of every finished trial, one row per (trial, epoch, output): the epoch's
        training losses (``loss``, ``loss.<term>``), validation F1 of that output, seconds of training, and
        the method's per-epoch extras (``extra.<name>``, e.g. CTKD's temperature)."""
        rows = []
        for rec in self.records():
            if rec.get("status") != "finished":
                continue
            opts = options_of(rec)
            ident = {"trial_id": rec["trial_id"], "dataset": rec["dataset"], "entry": rec.get("entry", ""),
                     "scenario": rec["scenario"], "method": rec["method"], "variant": rec.get("variant", ""),
                     "lskd": opts.get("lskd"), "ablation": opts.get("ablation") or "", "seed": rec["seed"]}
            for h in rec.get("history") or []:
                losses, extra = {}, {}
                for k, v in h.items():
                    if k.startswith("train/"):
                        name = k[len("train/"):]
                        losses["loss" if name == "loss" else f"loss.{name}"] = v
                    elif k not in ("epoch", "seconds") and not k.startswith(("val_f1/", "test_f1/")):
                        extra[f"extra.{k}"] = v
                for key in (k[len("val_f1/"):] for k in h if k.startswith("val_f1/")):
                    rows.append({**ident, "output": key, "epoch": h["epoch"], "seconds": h.get("seconds"),
                                 "val_f1": h[f"val_f1/{key}"], **losses, **extra})
        head = ["trial_id", "dataset", "entry", "scenario", "method", "variant", "lskd", "ablation", "seed", "output",
                "epoch", "seconds", "val_f1", "loss"]
        df = pd.DataFrame(rows)
        rest = sorted(c for c in df.columns if c not in head)
        df = df.reindex(columns=head + rest)
        df["lskd"] = df["lskd"].astype("boolean")
        return df

    def write_parquet(self, path: str | Path) -> Path:
        return _write(self.rows(), Path(path))

    def write_history(self, path: str | Path) -> Path:
        return _write(self.history(), Path(path))


def _write(df: pd.DataFrame, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, engine="pyarrow", index=False)
    tmp.replace(path)
    return path


def options_of(rec: dict[str, Any]) -> dict[str, Any]:
    """The record's resolved method options (every option, defaults included); what was set for records
    written before they were kept."""
    if isinstance(rec.get("options"), dict):
        return rec["options"]
    return dict((rec.get("spec") or {}).get("method_options") or {})


def _one_type(col: pd.Series) -> pd.Series:
    """One Parquet type per option column: numbers as float, booleans as boolean, anything else as text."""
    present = col.dropna()
    if present.empty:
        return col.astype("object")
    if all(isinstance(v, bool) for v in present):
        return col.astype("boolean")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return col.astype("float64")
    return col.map(lambda v: None if v is None or (isinstance(v, float) and v != v) else
                   (v if isinstance(v, str) else json.dumps(v, default=str)))
