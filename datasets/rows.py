"""A raw layout's samples (:class:`RawSample`, listed by name) decoded into rows, on every core.

Decoding (PIL, tifffile, an antialiased resize) is what a ``cmkd prepare`` spends its time on, and one
sample never depends on another. :func:`decode_into` hands chunks of samples to worker processes, and
each worker writes its rows straight into their places in the final ``.npy`` files (created at full
size beforehand): no image crosses a pipe, and the parent only counts chunks. Every row comes out of
the same ``adapter.decode`` whether one process or several ran it, so the files are byte-identical to
the serial ones. :func:`decode_rows` is the in-memory, serial form (training straight from a raw layout).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

from cmkd.errors import UserError

from .npyfile import RowFile
from .preprocess import progress



class Decoder(Protocol):
    """What decodes a sample: a data-set adapter (``RealDataset``), its options read, nothing else."""

    def decode(self, sample: RawSample) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class RawSample:
    """One sample of a raw layout, found by listing names only: its label, its file per modality, and where
    the data set itself puts it (published part: 0 train, 1 validation, 2 test, -1 none; its recording)."""

    label: int
    files: dict[str, Path]
    part: int = -1
    group: int = -1


@dataclass
class RawListing:
    """Every sample of a raw layout in row order, and what the data set publishes beside them."""

    samples: list[RawSample]
    published: bool = False  # whether ``part`` is the data set's own split
    grouped: bool = False  # whether ``group`` names each sample's recording
    meta: dict[str, Any] = field(default_factory=dict)

    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], np.int64)

    def parts(self) -> np.ndarray | None:
        return np.array([s.part for s in self.samples], np.int8) if self.published else None

    def groups(self) -> np.ndarray | None:
        return np.array([s.group for s in self.samples], np.int64) if self.grouped else None

#: below this many samples per worker, starting worker processes costs more than it saves
MIN_SAMPLES_PER_WORKER = 128
#: samples per task handed to a worker: large enough to amortise the hand-over, small enough for a smooth bar
CHUNK = 32


def available_cores() -> int:
    """The cores this process may run on (a container's or ``taskset``'s limit, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pick_workers(requested: int | None, n_samples: int) -> int:
    """``requested`` when given (>= 1); else every available core, fewer when the layout is small."""
    if requested is not None:
        if requested < 1:
            raise UserError(f"--workers must be 1 or more, got {requested}")
        return requested
    return max(1, min(available_cores(), n_samples // MIN_SAMPLES_PER_WORKER))


def check_row(rows: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], sample: RawSample) -> None:
    """Refuse, naming the file and the fix, a sample whose images are not the size of the others."""
    got = {m: a.shape for m, a in rows.items()}
    if got != shapes:
        where = next(iter(sample.files.values()))
        raise UserError(f"{where}: {_show(got)}, but the first sample has {_show(shapes)}; pass "
                        "--data-opt image_size=N to resize every sample to one size")


def decode_rows(adapter: Decoder, samples: Sequence[RawSample],
                desc: str = "samples") -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """(row, {modality: C x H x W float32}) for every sample, in order, in this process."""
    first: dict[str, tuple[int, ...]] = {}
    for i, sample in enumerate(progress(samples, desc, total=len(samples))):
        rows = adapter.decode(sample)
        first = first or {m: a.shape for m, a in rows.items()}
        check_row(rows, first, sample)
        yield i, rows


def _write_chunk(adapter: Decoder, paths: dict[str, Path], shapes: dict[str, tuple[int, ...]], start: int,
                 samples: Sequence[RawSample]) -> int:
    files = {m: RowFile(p, "r+") for m, p in paths.items()}
    try:
        for i, sample in enumerate(samples, start):
            rows = adapter.decode(sample)
            check_row(rows, shapes, sample)
            for m, a in rows.items():
                files[m].write(i, a[None])
    finally:
        for f in files.values():
            f.close()
    return len(samples)


def decode_into(adapter: Decoder, samples: Sequence[RawSample], paths: dict[str, Path],
                shapes: dict[str, tuple[int, ...]], workers: int = 1, desc: str = "samples") -> None:
    """Decode every sample into row i of ``paths[m]`` (``.npy`` files of N x ``shapes[m]``), on ``workers``
    processes (1: this one), with a progress bar and ETA on a terminal."""
    task = partial(_write_chunk, adapter, paths, shapes)
    starts = range(0, len(samples), CHUNK)
    bar = progress(None, desc, total=len(samples))
    try:
        if workers <= 1:
            for a in starts:
                bar.update(task(a, samples[a:a + CHUNK]))
            return
        with ProcessPoolExecutor(workers, mp_context=_context(), initializer=_one_thread) as pool:
            try:
                for done in pool.map(task, starts, [samples[a:a + CHUNK] for a in starts]):
                    bar.update(done)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        bar.close()


def _one_thread() -> None:
    """One process per core: a resize must not start threads of its own."""
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _context():
    """Fork where there is one: a worker starts in milliseconds with the parent's modules (a spawned one
    imports the ``cmkd`` command's modules again, torch among them: seconds and 0.7 GB each)."""
    import multiprocessing

    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def _show(shapes: dict[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{m} {'x'.join(map(str, s))}" for m, s in shapes.items())
