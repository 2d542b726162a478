"""The results store: one JSON :class:`ResultRecord` per trial, written atomically when the trial ends.

``<bench>/results/<trial id>.json`` with status ``finished``, ``failed`` (with the error) or
``skipped`` (with the reason). Keyed by trial id, so a rerun overwrites, never duplicates; a
finished record is final. ``rows()`` and ``history()`` are the long forms the tables and the Parquet
files are built from, each row made by the record itself.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from cmkd.harness.engine.corrupt import read_json_file, read_or_set_aside
from cmkd.harness.engine.io import write_json

from .record import FINAL, HISTORY_COLUMNS, ROW_COLUMNS, SELECTIONS, ResultRecord

__all__ = ["ResultsStore", "ResultRecord", "SELECTIONS", "ROW_COLUMNS"]

#: where a benchmark folder's records of trials its config no longer plans go (``set_aside_unplanned``)
SUPERSEDED_DIR = ".superseded"


class ResultsStore:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, trial_id: str) -> Path:
        return self.folder / f"{trial_id}.json"

    def get(self, trial_id: str) -> ResultRecord | None:
        """The trial's record; None when there is none, or when it does not parse (then it is set aside
        to ``.corrupt/`` with a warning, and the trial counts as not run: a rerun redoes it)."""
        return _read(self.path(trial_id))

    def status(self, trial_id: str) -> str | None:
        rec = self.get(trial_id)
        return rec.status if rec else None

    def put(self, record: ResultRecord) -> None:
        existing = self.get(record.trial_id)
        if existing and existing.status in FINAL and record.status not in FINAL:
            return  # a finished (or diverged) result is final
        record.written_at = time.strftime("%Y-%m-%dT%H:%M:%S")
        write_json(record.to_dict(), self.path(record.trial_id))

    def set_aside_unplanned(self, planned: set[str]) -> int:
        """Move the records of trials the benchmark no longer plans to ``.superseded/`` (kept, never deleted)
        and return how many. Same config, other trial ids: the data's content or the code's meaning of a spec
        changed since they ran (both are in a trial's identity). Left beside the current ones, a table cell
        would count such a seed twice."""
        moved = 0
        for path in sorted(self.folder.glob("*.json")):
            if path.stem in planned:
                continue
            dest = self.folder / SUPERSEDED_DIR / path.name
            dest.parent.mkdir(exist_ok=True)
            n = 1
            while dest.exists():
                dest, n = dest.with_name(f"{path.stem}.{n}.json"), n + 1
            path.replace(dest)
            moved += 1
        return moved

    def records(self) -> list[ResultRecord]:
        """Every readable record (a corrupt one is set aside with a warning, the rest are read)."""
        return [rec for rec in map(_read, sorted(self.folder.glob("*.json"))) if rec is not None]

    def rows(self) -> pd.DataFrame:
        """One row per (trial, evaluated output): the ``ROW_COLUMNS``, then ``opt.<name>`` per resolved
        method option (a method without that option: missing)."""
        df = pd.DataFrame([row for rec in self.records() for row in rec.output_rows()])
        opt_cols = sorted(c for c in df.columns if c.startswith("opt."))
        df = df.reindex(columns=ROW_COLUMNS + opt_cols)
        for c in opt_cols:
            df[c] = _one_type(df[c])
        df["lskd"] = df["lskd"].astype("boolean")
        return df

    def history(self) -> pd.DataFrame:
        """Per-epoch history of every finished trial, one row per (trial, epoch, output)."""
        df = pd.DataFrame([row for rec in self.records() for row in rec.history_rows()])
        rest = sorted(c for c in df.columns if c not in HISTORY_COLUMNS)
        df = df.reindex(columns=HISTORY_COLUMNS + rest)
        df["lskd"] = df["lskd"].astype("boolean")
        return df

    def write_parquet(self, path: str | Path) -> Path:
        return _write(self.rows(), Path(path))

    def write_history(self, path: str | Path) -> Path:
        return _write(self.history(), Path(path))


def _read(path: Path) -> ResultRecord | None:
    def parse(p: Path) -> ResultRecord:
        rec = ResultRecord.from_dict(read_json_file(p))
        if rec.trial_id != p.stem or not isinstance(rec.status, str):
            raise ValueError(f"names trial {rec.trial_id!r} with status {rec.status!r}")
        return rec

    return read_or_set_aside(path, parse, "its trial counts as not run and a rerun redoes it")


def _write(df: pd.DataFrame, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, engine="pyarrow", index=False)
    tmp.replace(path)
    return path


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
