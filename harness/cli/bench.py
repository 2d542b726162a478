"""``cmkd bench``: the whole benchmark, swept by Ray Tune, tracked in MLflow, resumable."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cmkd.errors import Interrupted, UserError


def cmd_bench(args: argparse.Namespace) -> int:
    from cmkd.harness.sweep.bench_config import load_config
    from cmkd.harness.sweep.tune import bench_folder, dry_run, run_bench

    overrides = list(args.set or [])
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.seeds:
        overrides.append(f"seeds=[{args.seeds}]")
    if args.cpu_fallback:
        overrides.append("cpu_fallback=true")
    for flag, value in (("--cpus", args.cpus), ("--gpus", args.gpus)):
        if value is not None and (value < 0 or (flag == "--cpus" and value == 0)):
            raise UserError(f"{flag} must be {'positive' if flag == '--cpus' else '0 or more'}, got {value:g}")
    cfg = load_config(args.profile, args.config, overrides)
    if args.dry_run:
        dry_run(cfg, cpus=args.cpus, gpus=args.gpus)
        return 0
    if args.cpus is not None or args.gpus is not None:
        raise UserError("--cpus and --gpus size a --dry-run's estimate; a run uses what Ray sees (set "
                        "resources.cpus_per_trial / gpus_per_trial to share it)")
    try:
        summary = run_bench(cfg, out=args.out, address=args.address or os.environ.get("RAY_ADDRESS") or None,
                            tracking_uri=args.tracking_uri, quiet=True)
    except Interrupted:
        from cmkd.results.report import write_all_tables

        folder = bench_folder(cfg, args.out)
        try:  # the tables of what finished, gaps marked
            write_all_tables(folder, echo=lambda text: None)
        except UserError:
            pass
        write_page(folder)  # what finished, and what is missing
        raise
    from cmkd.results.report import write_all_tables

    written = write_all_tables(summary.out_dir)
    out = summary.out_dir
    print(f"\nbenchmark finished in {summary.wall_s / 60:.1f} min: {summary.finished}/{summary.planned} trials "
          f"finished, {summary.failed} failed, {summary.skipped} skipped"
          + (f", {summary.diverged} diverged (a non-finite loss; recorded, not retried, left out of the means)"
             if summary.diverged else ""))
    if summary.loss_rose:
        print(f"training loss ended above its first epoch's in {len(summary.loss_rose)} trial(s), e.g. "
              f"{', '.join(summary.loss_rose[:3])}: check the learning rate")
    print(f"results: {out / 'results.parquet'} (a row per trial and output), {out / 'history.parquet'} (per epoch); "
          f"one JSON per trial in {out / 'results'}")
    print(f"tables:  {written} (tables.md, tables.tex, table<N>.png, stats.csv)")
    page = write_page(out)
    if page is not None:
        print(f"report:  {page} (one page: tables, leaderboards, plots, seeds, what is missing; opens offline)")
    print(kept_note(summary))
    print(f"MLflow:  experiment {summary.experiment!r} at {summary.tracking_uri}"
          + (f"; browse: mlflow ui --backend-store-uri {summary.tracking_uri}" if summary.tracking_uri.startswith("sqlite") else ""))
    print(f"log:     {out / 'logs' / 'driver.log'} (what Ray, Tune and MLflow printed)")
    if summary.failed or summary.skipped:
        print("some trials failed or were skipped: run the same command again to retry them")
        return 1
    return 0


def write_page(folder):
    """``report.html``; a page that cannot be written costs a warning, never the results or the exit code."""
    from cmkd.harness.engine.corrupt import warn
    from cmkd.results.page import write_html_report

    if not (Path(folder) / "results").is_dir():  # interrupted before any trial was filed: nothing to show
        return None
    try:
        return write_html_report(folder)
    except Exception as exc:  # noqa: BLE001 - a page that fails must not fail the benchmark it describes
        warn(f"report.html not written ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
             f"every result is kept; make it later with cmkd report {folder}")
        return None


def kept_note(summary) -> str:
    """What the benchmark kept on disk of its models, and the command that deploys one."""
    models = summary.models
    if models is None or models.empty:
        return "weights: none kept (keep_weights)"
    from cmkd.harness.sweep.retention import BEST

    teachers, best = int((models.why == "teacher").sum()), int((models.why == BEST).sum())
    other = len(models) - teachers - best
    parts = [f"{n} {what}" for n, what in ((teachers, "of teachers"), (best, "of the seed best on validation per table "
                                                                        "cell"), (other, "more (keep_weights = \"all\")"))
             if n]
    example = models[models.why == BEST].head(1)
    example = example if len(example) else models.head(1)
    return (f"weights: {len(models)} kept ({models.megabytes.sum():.0f} MB): {', '.join(parts)}; list: "
            f"{summary.out_dir / 'models.csv'}\n         deploy one: {example.export.iloc[0]}")


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="run the benchmark (default profile: quick, the built-in data) with Ray Tune")
    p.add_argument("--profile", default="quick", help="quick (default, synthetic data), paper, smoke, mst (MST-Distill's data sets)")
    p.add_argument("--config", help="a TOML file overriding the profile")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key (TOML value), e.g. train.epochs=3")
    p.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=N")
    p.add_argument("--seeds", help="shortcut for --set seeds=[...], e.g. 0,1")
    p.add_argument("--out", help="benchmark folder (default: results/<profile name>)")
    p.add_argument("--address", help="join an existing Ray cluster (or set RAY_ADDRESS), e.g. auto or HEAD:6379")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<out>/mlflow.db)")
    p.add_argument("--cpu-fallback", action="store_true", help="run on CPU when the config asks for GPUs and none is visible")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan, trial counts and a wall-clock estimate; train nothing, read no data")
    p.add_argument("--cpus", type=float, help="--dry-run: CPUs of the cluster to estimate for (default: this machine's)")
    p.add_argument("--gpus", type=float, help="--dry-run: GPUs of the cluster to estimate for (default: this machine's)")
    p.set_defaults(func=cmd_bench)
