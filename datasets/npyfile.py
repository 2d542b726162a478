"""An ``.npy`` file written and read in blocks of rows, never held whole in memory.

``cmkd prepare`` writes each decoded sample straight into its row of the final file, and normalises,
hashes and verifies the file a block at a time: its memory is a block (and one channel for the
percentiles), not the data set. Reads and writes are ``pread``/``pwrite`` on the file, so they pass
through the page cache without becoming part of the process's memory, as a memory map would.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

#: bytes per block of rows: large enough to stream at disk speed, small beside any data set
BLOCK_BYTES = 64 * 2**20


class RowFile:
    """One ``N x ...`` array in a standard ``.npy`` file (``np.load`` reads it), accessed by rows."""

    def __init__(self, path: str | Path, mode: str = "r") -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f, max_header_size=2**20)
            self.offset = f.tell()
        if fortran:
            raise ValueError(f"{self.path}: a Fortran-ordered array cannot be read by rows")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self._fd = os.open(self.path, os.O_RDWR if mode == "r+" else os.O_RDONLY)

    @classmethod
    def create(cls, path: str | Path, shape: tuple[int, ...], dtype=np.float32) -> "RowFile":
        """A new file of ``shape`` (header written, rows not: a sparse file until they are)."""
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.truncate(f.tell() + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
        return cls(path, "r+")

    def __len__(self) -> int:
        return self.shape[0]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "RowFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def block_rows(self, block_bytes: int | None = None) -> int:
        return max(1, (block_bytes or BLOCK_BYTES) // max(self.row_bytes, 1))

    def write(self, start: int, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape or start + len(rows) > len(self):
            raise ValueError(f"{self.path}: rows {rows.shape} at {start} do not fit {self.shape}")
        view, pos = memoryview(rows.reshape(-1).view(np.uint8)), self.offset + start * self.row_bytes
        while view:  # pwrite may write less than asked (large blocks, signals)
            done = os.pwrite(self._fd, view, pos)
            view, pos = view[done:], pos + done

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a new (writable) array."""
        stop = min(stop, len(self))
        out = np.empty((max(0, stop - start), *self.row_shape), self.dtype)
        view, pos = memoryview(out.reshape(-1).view(np.uint8)), self.offset + start * self.row_bytes
        while view:
            got = os.preadv(self._fd, [view], pos)
            if got == 0:
                raise EOFError(f"{self.path}: ends before row {stop} (truncated)")
            view, pos = view[got:], pos + got
        return out

    def blocks(self, block_bytes: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) over the whole file, in order."""
        step = self.block_rows(block_bytes)
        for start in range(0, len(self), step):
            yield start, self.read(start, start + step)
