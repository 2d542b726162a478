"""Keep what Ray, Tune and MLflow print at start-up and while running out of the user's terminal.

While a benchmark runs, the process's stdout and stderr (file descriptors 1 and 2, so also what C++
code and child processes write) go to a log file in the benchmark folder; cmkd's own view writes to
the terminal through a duplicate of the original stdout. Both are restored on the way out, before any
error is printed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator, TextIO


@contextlib.contextmanager
def terminal_to_log(log: Path) -> Iterator[TextIO]:
    """Redirect fds 1 and 2 into ``log`` (appended); yield a stream to the original stdout."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    term = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8", errors="replace")
    with open(log, "ab", buffering=0) as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield term
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            with contextlib.suppress(Exception):
                term.flush()
            term.close()
