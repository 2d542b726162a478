"""``cmkd tables``: the paper's Tables 1-4 from a benchmark folder, an MLflow experiment, or the paper."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cmkd.errors import UserError


def cmd_tables(args: argparse.Namespace) -> int:
    from cmkd.results.cells import cells_from_paper, cells_from_results, load_rows, rows_from_mlflow
    from cmkd.results.report import write_report

    sources = sum(bool(x) for x in (args.from_dir, args.experiment, args.paper))
    if sources != 1:
        raise UserError("give exactly one source: --from BENCH_FOLDER, --experiment NAME (with --tracking-uri), or --paper")
    if args.paper and args.selection != "best-val":
        raise UserError("--selection applies to results; the paper's numbers are as published (--paper)")
    if args.metric != "f1" and (args.paper or args.compare_paper):
        raise UserError(f"the paper reports weighted F1 only; --metric {args.metric} goes without --paper and "
                        "--compare-paper")
    tables = parse_tables(args.tables)
    rows = None
    if args.paper:
        cells = cells_from_paper()
        out = Path(args.out or "results/paper-rendered")
    elif args.experiment:
        if not args.tracking_uri:
            raise UserError("--experiment needs --tracking-uri (e.g. sqlite:////abs/path/mlflow.db or http://host:5000)")
        from cmkd.harness.sweep.tracking import check_uri

        check_uri(args.tracking_uri, must_exist=True)  # reading: never create a store, never hang on a dead server
        rows = rows_from_mlflow(args.tracking_uri, args.experiment)
        cells = cells_from_results(rows, args.selection, args.metric)
        out = Path(args.out or f"results/{args.experiment}-tables")
    else:
        rows = load_rows(args.from_dir)
        cells = cells_from_results(rows, args.selection, args.metric)
        suffix = "".join(f"-{v}" for v, default in ((args.selection, "best-val"), (args.metric, "f1")) if v != default)
        out = Path(args.out or Path(args.from_dir) / f"tables{suffix}")
    writable_folder(out, "--out")
    write_report(cells, out, rows, std=args.std, compare=args.compare_paper, tables=tables, selection=args.selection,
                 metric=args.metric)
    print(f"written: {out}/ (tables.md, tables.tex, table<N>.csv, table<N>.png, cells.csv"
          + (", results.parquet, stats.csv, stats.parquet, cost.csv)" if rows is not None else ")"))
    return 0


def writable_folder(path: Path, flag: str) -> None:
    """``path`` is (or can become) a folder this user may write: one line otherwise, before any work."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; pass a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".cmkd-write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"{flag} {path} cannot be written ({exc.strerror or exc}); pass a folder you may write") from None


def parse_tables(text: str | None) -> tuple[int, ...]:
    if not text:
        return (1, 2, 3, 4)
    parts = [p.strip() for p in text.split(",")]
    if not all(p in ("1", "2", "3", "4") for p in parts):
        raise UserError(f"--tables takes table numbers 1-4 separated by commas (e.g. 1,2), got {text!r}")
    return tuple(dict.fromkeys(int(p) for p in parts))


def add_parser(sub) -> None:
    p = sub.add_parser("tables", help="the paper's Tables 1-4 from results (or the paper's own numbers)")
    p.add_argument("--from", dest="from_dir", help="a benchmark folder (what cmkd bench --out wrote)")
    p.add_argument("--experiment", help="an MLflow experiment name (cmkd-<profile>-<hash>)")
    p.add_argument("--tracking-uri", help="the MLflow tracking URI of --experiment")
    p.add_argument("--paper", action="store_true", help="render the paper's own numbers through the same code")
    p.add_argument("--compare-paper", action="store_true", help="cells as ours / paper (delta)")
    p.add_argument("--std", action="store_true", help="add the standard deviation and seed count to every cell")
    p.add_argument("--tables", help="which tables, e.g. 1,2 (default all)")
    p.add_argument("--selection", default="best-val", choices=("best-val", "last", "oracle"),
                   help="which test F1 of each trial: at the best validation epoch (the protocol, default), at the "
                        "last epoch, or the best over epochs (selected on test: what a paper that peeks would report)")
    p.add_argument("--metric", default="f1", choices=("f1", "accuracy", "avg-accuracy", "kappa"),
                   help="what the cells show: weighted F1 (the paper's, default), accuracy, average per-class accuracy "
                        "or Cohen's kappa (x100), each at the best validation epoch (tables-<metric>/)")
    p.add_argument("--out", help="output folder")
    p.set_defaults(func=cmd_tables)
