"""Atomic file writes: a reader never sees a half-written file, an interrupted writer leaves none."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from cmkd.errors import UserError


class DiskFull(UserError):
    """The disk filled up while writing: one line naming where, never torch's "unexpected pos"."""


def disk_full(exc: BaseException, path: Path) -> DiskFull | None:
    """The :class:`DiskFull` that ``exc`` means when it is a full disk (ENOSPC, or the RuntimeError torch's
    zip writer raises on a short write), else None."""
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    full = full or (isinstance(exc, RuntimeError) and ("unexpected pos" in str(exc) or "file write failed" in str(exc)))
    if not full:
        return None
    return DiskFull(f"no space left on {path.parent} (writing {path.name}); free some space and run the same command "
                    "again: what finished is kept")


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


#: what ``open()`` would give a new file (mkstemp's files are 0600: results readable by their owner only)
FILE_MODE = 0o666 & ~_umask()


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)  # no half-written leftovers for the rest of the sweep to trip on
        full = disk_full(exc, path)
        if full is not None:
            raise full from None
        raise


def atomic_save(path: Path, save) -> None:
    """``save(tmp_path)`` for writers that want a path (``torch.export.save``), renamed into place."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        save(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        full = disk_full(exc, path)
        if full is not None:
            raise full from None
        raise


def save_torch(obj: Any, path: str | Path) -> None:
    _atomic(Path(path), lambda fh: torch.save(obj, fh))


def write_text(text: str, path: str | Path) -> None:
    """A text file written whole or not at all (a page, a model card), as ``write_json`` writes JSON."""
    _atomic(Path(path), lambda fh: fh.write(text.encode("utf-8")))


def write_json(obj: Any, path: str | Path) -> None:
    _atomic(Path(path), lambda fh: fh.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode()))
