"""``cmkd prepare``: read a published layout once, normalise, write a fast cache with a manifest."""

from __future__ import annotations

import argparse
import time

from cmkd.errors import UserError


def cmd_prepare(args: argparse.Namespace) -> int:
    from cmkd.datasets import get_dataset
    from cmkd.datasets.cache import read_cache, write_cache
    from cmkd.datasets.real_base import RealDataset

    from .main import parse_pairs

    opts = parse_pairs(args.data_opt, "--data-opt")
    if args.norm_stats:
        opts["norm_stats"] = args.norm_stats
    adapter = get_dataset(args.dataset, root=args.root, **opts)
    if not isinstance(adapter, RealDataset):
        raise UserError(f"{args.dataset!r} needs no preparation (it is generated or already arrays)")
    from pathlib import Path

    if Path(args.out).exists():
        raise UserError(f"{args.out} exists; choose a new --out or remove it")
    adapter.check()
    if adapter.source() != "raw":
        raise UserError(f"{args.root} holds a {adapter.source()} copy of {args.dataset}, not its raw layout; "
                        "train on it directly with --root")
    t0 = time.perf_counter()
    raw = adapter.read_raw()
    t_read = time.perf_counter() - t0
    data, norm = adapter.normalize(raw)
    t1 = time.perf_counter()
    try:
        out = write_cache(args.out, data, {"source": str(Path(args.root).resolve()), "options": adapter.options,
                                           "normalisation": norm, "read_seconds": round(t_read, 3)})
    except OSError as exc:
        from cmkd.harness.engine.io import disk_full

        full = disk_full(exc, Path(args.out) / "cache")
        if full is not None:
            raise full from None
        raise
    t_write = time.perf_counter() - t1
    t2 = time.perf_counter()
    read_cache(out, args.dataset)
    t_load = time.perf_counter() - t2
    shapes = ", ".join(f"{m} {tuple(a.shape)}" for m, a in data.modalities.items())
    print(f"prepared {args.dataset}: {data.n} samples ({shapes}) -> {out}")
    print(f"raw read {t_read:.2f} s, normalise + write {t_write:.2f} s, cache load {t_load:.2f} s")
    print(f"train on it: cmkd train --dataset {args.dataset} --root {out} ...")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("prepare", help="read a data set's raw layout once into a fast cache")
    p.add_argument("dataset")
    p.add_argument("--root", required=True, help="the raw published layout")
    p.add_argument("--out", required=True, help="the cache folder to create")
    p.add_argument("--data-opt", action="append", metavar="KEY=VALUE", help="an adapter option (repeatable)")
    p.add_argument("--norm-stats", help="percentiles over 'all' rows (default, the official rule) or 'train:R'")
    p.set_defaults(func=cmd_prepare)
