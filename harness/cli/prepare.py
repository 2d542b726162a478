"""``cmkd prepare``: read a published layout once, normalise, write a fast cache with a manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

from cmkd.errors import UserError


def cmd_prepare(args: argparse.Namespace) -> int:
    from cmkd.datasets import get_dataset
    from cmkd.datasets.build import Laps, prepare_cache
    from cmkd.datasets.mst import MSTDataset
    from cmkd.datasets.real_base import RealDataset

    from .main import parse_pairs

    laps = Laps()
    opts = parse_pairs(args.data_opt, "--data-opt")
    if args.norm_stats:
        opts["norm_stats"] = args.norm_stats
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be 1 or more, got {args.workers}")
    adapter = get_dataset(args.dataset, root=args.root, **opts)
    if not isinstance(adapter, (RealDataset, MSTDataset)):
        raise UserError(f"{args.dataset!r} needs no preparation (it is generated or already arrays)")
    if Path(args.out).exists():
        raise UserError(f"{args.out} exists; choose a new --out or remove it")
    if isinstance(adapter, MSTDataset):
        return prepare_arrays(adapter, Path(args.out), laps)
    adapter.check()
    if adapter.source() != "raw":
        raise UserError(f"{args.root} holds a {adapter.source()} copy of {args.dataset}, not its raw layout; "
                        "train on it directly with --root")
    laps.lap("check")
    try:
        done = prepare_cache(adapter, args.out, args.workers, str(Path(args.root).resolve()), laps)
    except OSError as exc:
        from cmkd.harness.engine.io import disk_full

        full = disk_full(exc, Path(args.out) / "cache")
        if full is not None:
            raise full from None
        raise
    for line in done.lines(args.dataset):
        print(line)
    print(f"train on it: cmkd train --dataset {args.dataset} --root {done.out} ...")
    return 0


def prepare_arrays(adapter, out: Path, laps) -> int:
    """A data set released as whole arrays (MST-Distill's): read and normalised once as its code does, written as
    a cache that every trial then memory-maps in place (its split permutations kept beside the arrays)."""
    from cmkd.datasets.cache import is_cache, write_cache

    if is_cache(adapter.root):
        raise UserError(f"{adapter.root} is already a prepared cache; train on it directly with --root")
    adapter.check()
    laps.lap("check")
    data = adapter.load()
    data.check_values()
    laps.lap("read and normalise")
    write_cache(out, data, {"source": str(Path(adapter.root).resolve()), "options": dict(adapter.options)})
    laps.lap("write")
    size = sum(a.nbytes for a in data.modalities.values()) / 2**30
    print(f"prepared {adapter.name}: {data.n} samples, {', '.join(data.sample(m).describe() for m in data.modalities)}, "
          f"{size:.2f} GiB in {out}")
    print("  " + ", ".join(f"{k} {v:.1f} s" for k, v in laps.phases.items()))
    print(f"train on it: cmkd train --dataset {adapter.name} --root {out} ...")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("prepare", help="read a data set's raw layout once into a fast cache")
    p.add_argument("dataset")
    p.add_argument("--root", required=True, help="the raw published layout")
    p.add_argument("--out", required=True, help="the cache folder to create")
    p.add_argument("--data-opt", action="append", metavar="KEY=VALUE", help="an adapter option (repeatable)")
    p.add_argument("--norm-stats", help="percentiles over 'all' rows (default, the official rule) or 'train:R'")
    p.add_argument("--workers", type=int, help="processes that decode images (default: every available core; one "
                                               "for layouts under 128 samples per core)")
    p.set_defaults(func=cmd_prepare)
