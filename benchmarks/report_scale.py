"""What ``report.html`` costs: its size in bytes and the time ``cmkd report`` takes to render it, for a real
benchmark folder and for one of the paper's size.

- ``--from FOLDER``: a finished benchmark folder (e.g. the default ``cmkd bench``'s ``results/quick``).
- ``--paper``: the paper profile's plan (planned from the data sets' declared sizes, no data read, as
  ``cmkd bench --profile paper --dry-run`` plans it), filled with *fixture* records: every planned trial
  finished, with random F1 values and per-epoch histories of the profile's epoch count. The numbers mean
  nothing; the folder has the paper's shape (trials, cells, epochs), which is what the report's cost depends
  on. It is written to a temporary folder and removed unless ``--keep``.

    python benchmarks/report_scale.py --from results/quick --paper

Each render runs ``write_html_report`` ``--reps`` times in this process; the median is printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def render_time(folder: Path, reps: int) -> tuple[float, int]:
    """Median seconds of ``write_html_report`` over ``reps`` renders, and the page's size in bytes."""
    from cmkd.results.page import write_html_report

    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        path = write_html_report(folder)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), path.stat().st_size


def paper_fixture(folder: Path, seed: int = 0) -> int:
    """A folder of the paper profile's plan with fixture records (random numbers); returns the trial count."""
    from cmkd.harness.engine.folders import variant_of
    from cmkd.harness.engine.io import write_json
    from cmkd.harness.sweep.bench_config import load_config
    from cmkd.harness.sweep.plan import build_plan, entry_infos
    from cmkd.harness.sweep.tune import claim_bench
    from cmkd.methods import FUSED, Method, get_method
    from cmkd.results.provenance import Session, now, record_session, this_machine
    from cmkd.results.record import ResultRecord
    from cmkd.results.store import ResultsStore

    rng = np.random.default_rng(seed)
    cfg = load_config("paper")
    infos = entry_infos(cfg, declared=True)
    plan = build_plan(cfg, infos)
    claim_bench(folder, cfg)
    store = ResultsStore(folder / "results")
    epochs = cfg.train.epochs
    for p in plan:
        s, cls = p.spec, get_method(p.spec.method)
        mods = list(infos[p.data_key].info.channels)
        keys = [s.modality] if s.modality else ([FUSED] if cls.outputs is Method.outputs else mods)
        level = rng.uniform(0.4, 0.9)
        outputs, costs = {}, {}
        for k in keys:
            curve = np.clip(level * (1 - np.exp(-np.arange(1, epochs + 1) / 20)) + rng.normal(0, 0.02, epochs), 0, 1)
            best = int(curve.argmax()) + 1
            outputs[k] = {"test_f1": float(curve[best - 1] - 0.02), "val_f1": float(curve[best - 1]), "best_epoch": best,
                          "last_test_f1": float(curve[-1] - 0.02), "oracle_test_f1": float(curve.max()),
                          "oracle_epoch": best}
            costs[k] = {"params": 11.2e6, "flops": 1.8e9, "latency_ms": 3.0, "deploy_images_per_s": 900.0}
        history = [{"epoch": e, "seconds": 30.0, "train/loss": 1.0 / e,
                    **{f"val_f1/{k}": outputs[k]["val_f1"] * (1 - np.exp(-e / 20)) for k in keys}}
                   for e in range(1, epochs + 1)]
        rec = ResultRecord(trial_id=p.trial_id, name=p.name, stage=p.stage, dataset=s.dataset, entry=p.entry,
                           scenario=s.scenario, method=s.method, variant=variant_of(s), modality=s.modality, seed=s.seed,
                           teacher_id=p.teacher_id, config_hash=cfg.config_hash(), options=dict(s.method_options),
                           status="finished", outputs=outputs, epochs_run=epochs, wall_time_s=float(rng.uniform(600, 3600)),
                           history=history, costs=costs, out_dir=str(folder / "runs" / p.trial_id))
        write_json(rec.to_dict(), store.path(p.trial_id))
    n = len(plan)
    record_session(folder, plan, Session(started=now(), ended=now(), wall_s=0.0, commit="fixture", dirty=None,
                                         machine=this_machine(1), planned=n, finished=n, failed=0, skipped=0,
                                         diverged=0, interrupted=False))
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="from_dir", help="a finished benchmark folder")
    ap.add_argument("--paper", action="store_true", help="also a paper-sized folder of fixture records")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the paper-sized fixture folder")
    args = ap.parse_args(argv)
    if args.from_dir:
        secs, size = render_time(Path(args.from_dir), args.reps)
        trials = len(list((Path(args.from_dir) / "results").glob("*.json")))
        print(f"{args.from_dir}: {trials} trials; report.html {size / 1e6:.2f} MB, rendered in {secs:.2f} s (median of {args.reps})")
    if args.paper:
        work = Path(tempfile.mkdtemp(prefix="cmkd-report-paper-"))
        t0 = time.perf_counter()
        n = paper_fixture(work / "paper")
        made = time.perf_counter() - t0
        secs, size = render_time(work / "paper", args.reps)
        print(f"paper profile (fixture records, {n} trials, written in {made:.1f} s): report.html {size / 1e6:.2f} MB, "
              f"rendered in {secs:.2f} s (median of {args.reps})" + (f"; kept in {work}" if args.keep else ""))
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
