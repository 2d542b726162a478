"""``cmkd bench --dry-run``'s time estimate: what a plan costs in wall-clock time on the slots given.

One student epoch of a data-set entry = its training images x the cost of one training image of a
student step (stated, ``per_image_ms``, or measured here on random inputs of that entry's shape) x
1.15 for the evaluation passes. Each trial costs its method's declared relative epoch cost x epochs of
that; trials are list-scheduled on the slots (``schedule.simulate``: students after their teachers,
the sweep's own launch order). No data are read: real data sets not on disk are planned from their
declared sizes.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .bench_config import BenchConfig
from .plan import EntryInfo, PlannedTrial, costs
from .progress import clock
from .schedule import Job, simulate

EVAL_OVERHEAD = 1.15  # validation + test predictions per epoch, relative to the training pass
REFERENCE_PIXELS = 224 * 224  # a stated per_image_ms is for 224 x 224 images (scaled by pixels to others)
TRIAL_OVERHEAD_S = 1.5  # start-up, data loading, tracking and result files per trial (a smoke run on 2 CPUs)
TRAIN_FRACTION = 0.7  # the protocol's training share (70/10/20), for entries planned from declared sizes


def duration(seconds: float) -> str:
    """``0:12`` / ``3:05:00`` / ``12.4 days``."""
    return f"{seconds / 86400:.1f} days" if seconds >= 2 * 86400 else clock(seconds)


def probe_batch(cfg: BenchConfig, entry: EntryInfo, device) -> int:
    """The trials' own batch, where a CPU step of it is cheap (small images: a small batch's per-step cost
    would be charged to every image, 10x too much for the default benchmark's 16 px); 16 on a CPU otherwise."""
    if device.type == "cpu" and math.prod(entry.info.sample(entry.info.rich).shape[-2:]) > 64 * 64:
        return min(cfg.train.batch_size, 16)
    return cfg.train.batch_size


def threads(cfg: BenchConfig, device) -> int:
    """Torch threads a trial has: its CPUs on a CPU (the probe measures what a trial gets), else unchanged."""
    return max(1, int(cfg.resources.cpus_per_trial)) if device.type == "cpu" else 0


def measure_image_seconds(entry: EntryInfo, batch: int, device, n_threads: int = 0, precision: str = "float32",
                          channels_last: bool = False) -> float:
    """Seconds per training image of a student step (the unit every method's cost is declared in), on
    random inputs of the entry's rich-modality shape, with ``n_threads`` torch threads (0: as they are), in the
    trials' float width and memory format (``train.precision``: float64 takes about twice as long on a CPU;
    ``train.channels_last``): 1 warm-up and 3 timed steps."""
    import torch

    before = torch.get_num_threads()
    if n_threads:
        torch.set_num_threads(n_threads)
    try:
        return _timed_steps(entry, batch, device, getattr(torch, precision), channels_last)
    finally:
        torch.set_num_threads(before)


def _timed_steps(entry: EntryInfo, batch: int, device, dtype, channels_last: bool) -> float:
    import torch

    from cmkd.harness.engine.step import make_optimizer, train_step
    from cmkd.methods import Batch, teacher_method

    info = entry.info
    cls = teacher_method("cross-modal")
    method = cls(info, info.rich, cls.Options()).to(device, dtype).train()
    opt = make_optimizer(method.param_groups(1e-4), 1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *info.sample(info.rich).shape, generator=g).to(device, dtype)
    y = torch.randint(0, info.n_classes, (batch,), generator=g).to(device)
    if channels_last and x.ndim == 4:
        method, x = method.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(4):
        t0 = time.perf_counter()
        train_step(method, opt, Batch(x={info.rich: x}, y=y), 0, False, device.type)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return sorted(times)[1] / batch


def plan_slots(cfg: BenchConfig, cpus: float | None, gpus: float | None) -> tuple[int, str]:
    """Trials that run at once, and how that number came about."""
    r = cfg.resources
    if r.gpus_per_trial > 0:
        if gpus is None:
            import torch

            seen = float(torch.cuda.device_count())
            gpus = seen or 1.0
            how = f"{gpus:g} GPU(s) {'visible here' if seen else 'assumed (none visible here; pass --gpus N)'}"
        else:
            how = f"{gpus:g} GPU(s)"
        slots = int(gpus // r.gpus_per_trial)
        how += f" / {r.gpus_per_trial:g} GPU per trial"
        if cpus is not None:
            slots = min(slots, int(cpus // r.cpus_per_trial))
            how += f", {cpus:g} CPUs / {r.cpus_per_trial:g} per trial"
    else:
        given = cpus is not None
        cpus = float(cpus if given else os.cpu_count() or 1)
        slots = int(cpus // r.cpus_per_trial)
        how = f"{cpus:g} CPUs{'' if given else ' here'} / {r.cpus_per_trial:g} per trial"
    if cfg.max_concurrent and cfg.max_concurrent < slots:
        slots, how = cfg.max_concurrent, how + f", max_concurrent {cfg.max_concurrent}"
    return max(1, slots), how


@dataclass
class FirstLoad:
    """What a data-set entry costs before its first training step: ``seconds`` once per machine (a cache or
    official arrays read from disk: every worker shares the page cache) or in every worker (``per_worker``: a
    raw layout each worker decodes itself)."""

    seconds: float = 0.0
    per_worker: bool = False
    note: str = ""


def read_rate(path: Path, probe: int = 256 * 2**20) -> float:
    """Bytes per second reading ``path`` from disk: its first ``probe`` bytes dropped from the page cache
    (clean pages: nothing is lost) and read back, timed. Infinite for a file too small to time."""
    size = min(probe, path.stat().st_size)
    if size < 16 * 2**20:
        return float("inf")
    fd = os.open(path, os.O_RDONLY)
    try:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, size, os.POSIX_FADV_DONTNEED)
        t0, done = time.perf_counter(), 0
        while done < size:
            chunk = os.pread(fd, min(8 * 2**20, size - done), done)
            if not chunk:
                break
            done += len(chunk)
        return done / max(time.perf_counter() - t0, 1e-9)
    finally:
        os.close(fd)


def first_load(entry) -> FirstLoad:
    """The entry's :class:`FirstLoad`, measured: the disk's read rate on its arrays, or the decoding of a few
    raw samples scaled to the layout (generated data: none worth counting)."""
    from cmkd.datasets import get_dataset
    from cmkd.datasets.cache import is_cache
    from cmkd.datasets.real_base import RealDataset
    from cmkd.harness.engine.data import default_root

    root = entry.root or default_root(entry.name)
    adapter = get_dataset(entry.name, root=root, **entry.options)
    if not isinstance(adapter, RealDataset) and not (root and any(Path(root).glob("*.npy"))):
        return FirstLoad()
    if root is None or not adapter.found():
        return FirstLoad(note=f"{entry.key}: not on disk, its first load not counted")
    if isinstance(adapter, RealDataset) and adapter.source() == "raw":
        listing = adapter.listing()
        few = listing.samples[:8]
        t0 = time.perf_counter()
        for sample in few:
            adapter.decode(sample)
        each = (time.perf_counter() - t0) / len(few)
        return FirstLoad(each * len(listing.samples), True,
                         f"{entry.key}: every worker decodes the raw layout itself ({len(listing.samples)} samples x "
                         f"{1000 * each:.0f} ms; `cmkd prepare` pays this once)")
    files = sorted(Path(root).glob("*.npy"), key=lambda f: f.stat().st_size)
    total = sum(f.stat().st_size for f in files)
    rate = read_rate(files[-1]) if files else float("inf")
    seconds = total / rate if math.isfinite(rate) else 0.0
    what = "cache" if is_cache(root) else "arrays"
    return FirstLoad(seconds, False, f"{entry.key}: first read of its {total / 1e9:.2f} GB {what} at "
                                     f"{'RAM speed' if not math.isfinite(rate) else f'{rate / 1e6:.0f} MB/s'} measured, "
                                     "once per machine (workers share the page cache)")


@dataclass
class PlanTime:
    """A plan's estimated wall time, each trial's seconds (training and fixed), and the lines that say so."""

    wall: float
    seconds: dict[str, float]
    lines: list[str] = field(default_factory=list)


def estimate(plan: list[PlannedTrial], infos: dict[str, EntryInfo], cfg: BenchConfig, cpus: float | None = None,
             gpus: float | None = None) -> str:
    """Wall-clock time, trial-hours and the assumptions behind them (three lines)."""
    return "\n".join(plan_time(plan, infos, cfg, cpus, gpus).lines)


def plan_time(plan: list[PlannedTrial], infos: dict[str, EntryInfo], cfg: BenchConfig, cpus: float | None = None,
              gpus: float | None = None, device=None) -> PlanTime:
    """:func:`estimate`'s numbers (``device``: where to measure a step, default a GPU if one is visible)."""
    import torch

    from cmkd.harness.engine.data import load_data, split_for

    slots, how = plan_slots(cfg, cpus, gpus)
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    epoch_s, parts, loads = {}, [], {}
    for entry in cfg.datasets:
        e = infos[entry.key]
        if e.source == "data":
            data = load_data(entry.name, entry.root, entry.options)
            n_train = len(split_for(data, cfg.seeds[0], cfg.train.split_rule, cfg.train.split).train)
            where = f"{e.n_samples} samples on disk"
            loads[entry.key] = first_load(entry)
        else:
            n_train = int(round(TRAIN_FRACTION * e.n_samples))
            where = f"declared {e.n_samples} samples, data not on disk"
        if cfg.per_image_ms:  # stated at 224 x 224, scaled by pixel count
            sample = e.info.sample(e.info.rich)  # a sequence counts its frames' pixels; a vector counts as one pixel
            pixels = math.prod(sample.image_size) * (sample.steps or 1) if sample.image_size else 1
            per_image, src = cfg.per_image_ms / 1000 * pixels / REFERENCE_PIXELS, f"stated {cfg.per_image_ms:g} ms at 224x224, scaled"
        else:
            per_image, src = measure_image_seconds(e, probe_batch(cfg, e, device), device, threads(cfg, device),
                                                 cfg.train.precision, cfg.train.channels_last), \
                f"measured on {device.type}"
        epoch_s[entry.key] = n_train * per_image * EVAL_OVERHEAD
        parts.append(f"{entry.key}: {n_train} training images ({where}) x {1000 * per_image:.2g} ms/image "
                     f"({src}, {_rich_text(e.info)})")
    cost = costs(plan, infos)
    seconds = {p.trial_id: cost[p.trial_id] * epoch_s[p.data_key] + TRIAL_OVERHEAD_S for p in plan}
    jobs = [Job(p.trial_id, seconds[p.trial_id], p.teacher_id, p.stage) for p in plan]
    load_s = sum(f.seconds for f in loads.values())  # per machine, or per worker with all workers at once
    wall = (simulate(jobs, slots) if jobs else 0.0) + load_s
    trial_h = (sum(seconds.values()) + sum(f.seconds * (slots if f.per_worker else 1) for f in loads.values())) / 3600
    gpu_note = f" = {trial_h * cfg.resources.gpus_per_trial:.1f} GPU-hours" if cfg.resources.gpus_per_trial > 0 else ""
    warn = ("; measured on this machine's CPU for a GPU plan: state per_image_ms for the GPU "
            "(--set per_image_ms=X)" if cfg.resources.gpus_per_trial > 0 and device.type == "cpu" and not cfg.per_image_ms
            else "")
    notes = [f.note for f in loads.values() if f.note]
    load_line = (f"; first loads {load_s:.0f} s ({'; '.join(notes)})" if notes else "")
    return PlanTime(wall, seconds, [
        f"time: {duration(wall)} wall-clock on {slots} slot(s) ({how}); {trial_h:.2f} trial-hours in all{gpu_note}",
        "assumes: one student epoch = training images x ms/image x 1.15 (evaluation) with "
        + "; ".join(parts) + f"; each method's declared cost relative to a student epoch; {TRIAL_OVERHEAD_S:g} s fixed "
        "per trial" + load_line + "; students start when their teacher ends; no failures or retries" + warn,
    ])


def _rich_text(info) -> str:
    """``16x16 px rgb`` for an image rich modality (as before kinds), else its kind and shape."""
    sample = info.sample(info.rich)
    if sample.kind == "image":
        return f"{'x'.join(map(str, sample.image_size))} px {info.rich}"
    return f"{sample.describe()} {info.rich}"
