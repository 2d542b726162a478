"""One writer per folder: an advisory lock (``flock``) on ``<folder>/.lock`` naming its holder.

The kernel drops the lock when the holder dies, however it dies (a killed driver leaves no stale lock),
and the file keeps the holder's PID, host and start time for the error a second writer gets. ``flock``
is local to a machine on many network file systems: on a cluster, run one driver per benchmark folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path

from cmkd.errors import UserError

LOCK_FILE = ".lock"


class FolderLock:
    def __init__(self, folder: str | Path, what: str):
        self.folder = Path(folder)
        self.what = what
        self.fd: int | None = None
        self.created = False

    def __enter__(self) -> "FolderLock":
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"{self.folder} is a file, not a folder; choose another --out")
        self.created = not self.folder.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot create {self.folder} ({exc.strerror}); choose another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise UserError(f"{self.folder} is in use by another cmkd {self.what} (PID {holder.get('pid', '?')} on "
                            f"{holder.get('host', '?')}, since {holder.get('since', '?')}); wait for it to end or stop "
                            "it, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def discard_if_new(self) -> None:
        """Remove the folder again when this lock created it and nothing else was written into it."""
        if self.created and [p.name for p in self.folder.iterdir()] == [LOCK_FILE]:
            shutil.rmtree(self.folder, ignore_errors=True)


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}
