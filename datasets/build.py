"""``cmkd prepare``: a raw layout into a cache, in bounded memory and on every core.

Rows are decoded in worker processes (:mod:`.rows`) and written straight into their place in the
final ``.npy`` files (:mod:`.npyfile`); the percentiles gather a few channels at a time, and the
normalisation, the checksum and the read-back verification stream blocks of rows. So the memory a
prepare needs is one pass of channels and a few blocks, not the data set: it is estimated from the
layout before anything is decoded, and a machine short of memory or disk is told so in one line.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmkd.errors import UserError

from .cache import Checksum, cache_folder, manifest_for, scan_cache, write_content, write_manifest, write_small
from .npyfile import BLOCK_BYTES, RowFile
from .preprocess import apply_stats, file_percentiles
from .real_base import RawListing, RealDataset
from .rows import decode_into, pick_workers
from .splits import make_split

#: the percentiles gather at most this share of the cache per pass (one channel at least)
PASS_SHARE = 0.5
#: resident memory of one decoding worker process (Python, numpy, torch, PIL, tifffile), measured
WORKER_BYTES = 350 * 2**20
GB = 1e9


@dataclass
class Laps:
    """Consecutive phases timed from one clock, so that they add up to the wall time by construction."""

    phases: dict[str, float] = field(default_factory=dict)
    _last: float = field(default_factory=time.perf_counter)

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self._last
        self._last = now


@dataclass(frozen=True)
class Needs:
    """What a prepare of ``shapes`` (per modality, N x C x H x W) needs, from the layout alone."""

    shapes: dict[str, tuple[int, ...]]
    workers: int

    @property
    def cache_bytes(self) -> int:
        n = next(iter(self.shapes.values()))[0]
        return sum(int(np.prod(s, dtype=np.int64)) * 4 for s in self.shapes.values()) + 8 * n

    @property
    def pass_bytes(self) -> int:
        return int(PASS_SHARE * self.cache_bytes)

    def stats_bytes(self) -> int:
        """The largest pass of channels the percentiles gather."""
        most = 0
        for n, chans, *plane in self.shapes.values():
            channel = n * int(np.prod(plane, dtype=np.int64)) * 4
            most = max(most, channel * max(1, min(chans, self.pass_bytes // max(channel, 1))))
        return most

    @property
    def memory_bytes(self) -> int:
        """Peak resident memory of the prepare (its workers included), besides the interpreter."""
        return self.stats_bytes() + 3 * BLOCK_BYTES + self.workers * WORKER_BYTES

    def check(self, name: str, out: Path) -> None:
        """Refuse, before any decoding, a machine short of disk at ``out`` or of memory, naming both numbers."""
        where = next((p for p in [out, *out.parents] if p.exists()), Path("."))
        free, avail = shutil.disk_usage(where).free, available_memory()
        short_disk = self.cache_bytes > free
        short_memory = avail is not None and self.memory_bytes > avail
        if short_disk or short_memory:
            n = next(iter(self.shapes.values()))[0]
            have = f"{free / GB:.1f} GB free, {'?' if avail is None else f'{avail / GB:.1f}'} GB available"
            raise UserError(f"preparing {name} ({n} samples) needs about {self.cache_bytes / GB:.1f} GB of disk at "
                            f"{where} and {self.memory_bytes / GB:.1f} GB of memory; this machine has {have}: "
                            f"{'free disk space or choose another --out' if short_disk else 'free memory'}, or pass a "
                            "smaller --data-opt image_size" + ("" if short_disk or self.workers == 1 else " or --workers 1"))


def available_memory() -> int | None:
    """Bytes this process may still use: the kernel's MemAvailable, within a cgroup's limit where one is set
    (a container or a batch job); None where neither can be read."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            left = int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
            avail = left if avail is None else min(avail, left)
    except (OSError, ValueError):
        pass
    return avail


def row_shapes(adapter: RealDataset, listing: RawListing) -> dict[str, tuple[int, ...]]:
    """Each modality's N x C x H x W: from the ``image_size`` option, else from the first sample decoded."""
    n, side = len(listing.samples), int(adapter.options.get("image_size") or 0)
    if side:
        return {m: (n, c, side, side) for m, c in adapter.modality_channels().items()}
    return {m: (n, *a.shape) for m, a in adapter.decode(listing.samples[0]).items()}


@dataclass
class Prepared:
    """What a prepare did: the cache, its shapes and size, the decode workers and each phase's seconds."""

    out: Path
    shapes: dict[str, tuple[int, ...]]
    cache_bytes: int
    workers: int
    phases: dict[str, float]

    def lines(self, name: str) -> list[str]:
        n = next(iter(self.shapes.values()))[0]
        shapes = ", ".join(f"{m} {tuple(s)}" for m, s in self.shapes.items())
        rate = n / self.phases["decode"] if self.phases.get("decode") else float("nan")
        laps = " + ".join(f"{k} {v:.2f} s" for k, v in self.phases.items())
        return [f"prepared {name}: {n} samples ({shapes}, {self.cache_bytes / GB:.2f} GB) -> {self.out}",
                f"{laps} = {sum(self.phases.values()):.2f} s wall; decoded {rate:.0f} samples/s on {self.workers} "
                f"worker(s)"]


def prepare_cache(adapter: RealDataset, out: str | Path, workers: int | None = None, source: str = "",
                  laps: Laps | None = None) -> Prepared:
    """Read ``adapter``'s raw layout into a new cache at ``out`` (see the module's docstring); ``laps``: the
    caller's clock, whose earlier phases the result's count too."""
    out, laps = Path(out), laps or Laps()
    listing = adapter.listing()
    shapes = row_shapes(adapter, listing)
    needs = Needs(shapes, pick_workers(workers, len(listing.samples)))
    needs.check(adapter.name, out)
    labels = listing.labels()
    laps.lap("list")
    with cache_folder(out) as tmp:
        files = {m: RowFile.create(tmp / f"{m}.npy", s) for m, s in shapes.items()}
        try:
            decode_into(adapter, listing.samples, {m: f.path for m, f in files.items()},
                        {m: s[1:] for m, s in shapes.items()}, needs.workers, f"{adapter.name} samples")
            laps.lap("decode")
            ns = str(adapter.options.get("norm_stats", "all"))
            train = None if ns == "all" else np.sort(make_split(labels, int(ns[6:])).train)
            stats = {m: file_percentiles(f, train, needs.pass_bytes, needs.workers) for m, f in files.items()}
            laps.lap("statistics")
            written = Checksum(labels)
            for m in sorted(files):
                written.begin(m, int(np.prod(shapes[m], dtype=np.int64)))
                for start, block in files[m].blocks():
                    files[m].write(start, apply_stats(block, stats[m], out=block))
                    written.update(block)
            laps.lap("normalise")
        finally:
            for f in files.values():
                f.close()
        write_small(tmp, labels, listing.parts(), listing.groups())
        norm = {"rule": "per-channel 2nd-98th percentile to [0, 1], clipped", "rows": ns, "stats": stats}
        manifest = manifest_for(adapter.name, list(adapter.class_names), adapter.rich, labels, shapes,
                                written.hexdigest(), {"source": source, "options": adapter.options, "normalisation": norm,
                                                      "workers": needs.workers, **listing.meta})
        content_hash, read_back = scan_cache(tmp, manifest, labels)  # the files as read back, a block at a time
        if read_back != manifest["checksum"]:
            raise UserError(f"{tmp}: the files read back differ from what was written (a failing disk or file system); "
                            "run cmkd prepare again, on another disk")
        write_content(tmp, manifest, content_hash)
        laps.lap("verify")
        manifest["seconds"] = {k: round(v, 3) for k, v in laps.phases.items()}
        write_manifest(tmp, manifest)
    laps.lap("finish")
    return Prepared(out, shapes, needs.cache_bytes, needs.workers, laps.phases)
