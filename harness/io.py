"""Atomic file writes: a reader never sees a half-written file, an interrupted writer leaves none."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_torch(obj: Any, path: str | Path) -> None:
    _atomic(Path(path), lambda fh: torch.save(obj, fh))


def write_json(obj: Any, path: str | Path) -> None:
    _atomic(Path(path), lambda fh: fh.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode()))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
