"""Files that do not parse: set aside, named in one warning line, and redone; never a dead end.

A truncated ``results/<id>.json``, a ``checkpoint.pt`` cut short by a full disk or a ``spec.json`` edited
by hand would otherwise fail every resume the same way. :func:`set_aside` moves such a file into a
``.corrupt/`` folder beside it (never deleted: the user may want it back) with a ``.reason`` note, and
the caller goes on as if the file were absent: the trial reruns from its last good state, a table is
built from the other records.
"""

from __future__ import annotations

import json
import pickle
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

CORRUPT_DIR = ".corrupt"
T = TypeVar("T")

#: what reading a damaged JSON or torch file raises (a torch zip cut short, bytes that are not UTF-8 or not
#: a pickle of tensors, a field of the wrong type for the record built from it, a folder where a file
#: belongs). Not I/O errors in general: a transient read error must not set a good file aside
PARSE_ERRORS = (ValueError, UnicodeDecodeError, EOFError, KeyError, TypeError, AttributeError, RuntimeError,
                zipfile.BadZipFile, pickle.UnpicklingError, IsADirectoryError)


def is_damage(exc: BaseException) -> bool:
    """``exc`` (one of :data:`PARSE_ERRORS`) says the file is damaged, not that memory ran out while reading it."""
    return not (isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower())


def warn(message: str) -> None:
    print(f"cmkd: warning: {message}", file=sys.stderr, flush=True)


def set_aside(path: Path, reason: str, then: str) -> Path:
    """Move ``path`` to ``<its folder>/.corrupt/<name>.<time>`` with a ``.reason`` note beside it, and
    warn once naming the file, why and what happens ``then``. Returns where it went."""
    folder = path.parent / CORRUPT_DIR
    folder.mkdir(exist_ok=True)
    dest = folder / f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while dest.exists():
        dest, n = folder / f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.{n}", n + 1
    path.replace(dest)
    dest.with_name(dest.name + ".reason").write_text(reason + "\n")
    warn(f"{path} is corrupt ({reason}); set aside to {dest}; {then}")
    return dest


def reason(exc: BaseException) -> str:
    """``ExcType: first line of its message`` (bounded): why a file did not parse, for a warning or an error."""
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_or_set_aside(path: Path, parse: Callable[[Path], T], then: str) -> T | None:
    """``parse(path)``, or None when the file is absent, or unreadable (then set aside with a warning).
    A file that vanished meanwhile (another process set it aside first) counts as absent."""
    try:
        return parse(path)
    except FileNotFoundError:
        return None
    except PARSE_ERRORS as exc:
        if not is_damage(exc):
            raise
        if not path.exists():
            return None
        try:
            set_aside(path, reason(exc), then)
        except FileNotFoundError:
            pass
        return None


def read_json_file(path: Path) -> Any:
    """The JSON in ``path``; a top level other than an object is damage too (every file cmkd writes holds one)."""
    obj = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(obj, dict):
        raise ValueError(f"holds a JSON {type(obj).__name__}, not an object")
    return obj


def load_tensors(path: Path) -> Any:
    """A torch file of tensors and plain values only (never unpickles anything else)."""
    return torch.load(path, map_location="cpu", weights_only=True)
