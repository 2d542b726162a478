"""Shared preprocessing of real data sets: image reading, resizing, percentile normalisation.

The normalisation is the official DisCoM-KD rule (``preproc2.py``): per channel, the 2nd and 98th
percentiles over every image and pixel map linearly to 0 and 1, then values are clipped to [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cmkd.errors import UserError

if TYPE_CHECKING:
    from .npyfile import RowFile

LOW_PCT, HIGH_PCT = 2.0, 98.0


def percentile_stats(arr: np.ndarray, rows: np.ndarray | None = None) -> list[tuple[float, float]]:
    """(p2, p98) per channel of an N x C x H x W array, over ``rows`` (all rows when None)."""
    src = arr if rows is None else arr[np.sort(rows)]
    stats = []
    for c in range(src.shape[1]):
        lo, hi = np.percentile(src[:, c], [LOW_PCT, HIGH_PCT])
        stats.append((float(lo), float(hi)))
    return stats


def file_percentiles(f: "RowFile", rows: np.ndarray | None, pass_bytes: int,
                     threads: int = 1) -> list[tuple[float, float]]:
    """:func:`percentile_stats` of an N x C x H x W ``.npy`` file without holding it: each pass gathers as many
    whole channels (over ``rows``, sorted; all rows when None) as fit ``pass_bytes`` (one at least), reading
    the file a block of rows at a time, and selects the channels' percentiles on ``threads`` threads (numpy's
    partition releases the GIL). The same values in, the same (exact) percentiles out."""
    from concurrent.futures import ThreadPoolExecutor

    chans, plane = f.row_shape[0], f.row_shape[1:]
    n = len(f) if rows is None else len(rows)
    channel_bytes = n * int(np.prod(plane, dtype=np.int64)) * f.dtype.itemsize
    per_pass = int(max(1, min(chans, pass_bytes // max(channel_bytes, 1))))
    stats = []
    for c0 in range(0, chans, per_pass):
        c1 = min(chans, c0 + per_pass)
        buf = np.empty((c1 - c0, n, *plane), f.dtype)
        filled = 0
        for start, block in f.blocks():
            if rows is not None:
                lo_i, hi_i = np.searchsorted(rows, [start, start + len(block)])
                block = block[rows[lo_i:hi_i] - start]
            buf[:, filled:filled + len(block)] = block[:, c0:c1].swapaxes(0, 1)
            filled += len(block)
        with ThreadPoolExecutor(max(1, threads)) as pool:
            found = pool.map(lambda k: np.percentile(buf[k], [LOW_PCT, HIGH_PCT], overwrite_input=True), range(c1 - c0))
            stats += [(float(lo), float(hi)) for lo, hi in found]
        buf = None  # freed before the next pass allocates its own
    return stats


def apply_stats(arr: np.ndarray, stats: list[tuple[float, float]], out: np.ndarray | None = None) -> np.ndarray:
    """Each channel's (p2, p98) mapped to (0, 1), clipped; into ``out`` (which may be ``arr``: in place)."""
    out = np.empty(arr.shape, np.float32) if out is None else out
    for c, (lo, hi) in enumerate(stats):
        scale = (hi - lo) if hi > lo else 1.0
        np.clip((arr[:, c] - lo) / scale, 0.0, 1.0, out=out[:, c])
    return out


def resize(img: np.ndarray, size: int | None) -> np.ndarray:
    """C x H x W float -> C x size x size (area-averaging when shrinking); None keeps the size."""
    if size is None or img.shape[-2:] == (size, size):
        return img
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None]
    return F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].numpy()


def read_png(path: Path, bits: int) -> np.ndarray:
    """An H x W (or H x W x 3) PNG; ``bits`` 16 insists on a 16-bit single-channel file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.array(im)
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise UserError(f"{path}: cannot read the image ({exc}); the file is corrupt or truncated") from None
    if bits == 16:
        if mode not in ("I;16", "I;16B", "I;16L", "I") or arr.ndim != 2:
            raise UserError(f"{path}: expected a 16-bit single-channel PNG, got mode {mode} {arr.shape}")
        if mode == "I" and arr.max(initial=0) > 65535:
            raise UserError(f"{path}: values exceed 16 bits")
        return arr.astype(np.uint16)
    return arr


def read_rgb(path: Path) -> np.ndarray:
    """A colour image as 3 x H x W float32 (0-255)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("RGB", "L", "P", "RGBA"):
                raise UserError(f"{path}: expected an 8-bit colour image, got mode {im.mode}")
            arr = np.array(im.convert("RGB"), dtype=np.float32)
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise UserError(f"{path}: cannot read the image ({exc}); the file is corrupt or truncated") from None
    return arr.transpose(2, 0, 1)


def progress(items, desc: str, total: int | None = None, unit: str = "sample"):
    """A bar with rate and ETA on a terminal (stderr), silent when stderr is not one."""
    import sys

    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=unit, total=total, leave=False, mininterval=0.5,
                disable=not sys.stderr.isatty())
