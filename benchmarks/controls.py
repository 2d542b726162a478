"""The known-answer control: does cross-modal KD help exactly where the modality focusing hypothesis
says it should? Read on the default benchmark itself (``cmkd bench``, profile ``quick``), run here or
given as a finished folder: per regime and KD method, the gain over STUDENT on the poor modality (mean,
95% t interval and paired p over seeds: the same seed is the same split), the contrast between regimes,
and the verdict from the table's own statistics (paired t-test against STUDENT, Holm within the column).

- ``shared`` (synthetic ``shared=1``): the class signal that decides the rich modality (rgb) is also
  in the poor one (depth). Expected: logit KD from the rgb teacher beats STUDENT on depth.
- ``specific`` (``shared=0``): rgb is decided by a signal depth does not have. Expected: no gain.

    python benchmarks/controls.py [--from BENCH_FOLDER | --out DIR] [--set KEY=VALUE ...] [--check]
                                  [--same-marks OTHER_FOLDER]

``--check`` exits 1 unless, in Table 1, at least two distilled methods gain significantly over STUDENT in
the shared column (Holm-corrected, as the table marks them), KDv1 among them, and none gains
significantly in the specific column.

``--same-marks OTHER`` compares the run with another run of the same config (another CPU, instruction
set or thread count): every Table 1 cell's mark (significantly above STUDENT, significantly below, or
not significant) and whether the other run's mean lies inside this run's 95% interval. With ``--check``
it also exits 1 when a mark differs. It also counts the trial outputs both runs finished that are equal
to the digit: all of them, for a run in ``train.precision = "float64"`` (the default's); in float32 the
digits move across machines and only the verdict and the intervals are promised.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from cmkd.harness.sweep.bench_config import load_config
from cmkd.harness.sweep.tune import run_bench
from cmkd.results import controls
from cmkd.results.stats import paired_p, t_interval
from cmkd.results.store import ResultsStore


def gains(rows: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Per entry and method: the paired gain of the cross-modal KD student over STUDENT on the poor modality."""
    from cmkd.datasets import DATASETS

    done = rows[rows.status == "finished"]
    out = []
    for entry, sub in done.groupby("entry"):
        rich = DATASETS[sub.dataset.iloc[0]].rich
        poor = sorted(set(sub.modality) - {rich, "all", None})
        for m in poor:
            student = sub[(sub.method == "student") & (sub.modality == m)].set_index("seed").test_f1 * 100
            teacher = sub[(sub.method == "student") & (sub.modality == rich)].test_f1 * 100
            for method in methods:
                kd = sub[(sub.method == method) & (sub.modality == m) & (sub.scenario == "cross-modal")].set_index("seed").test_f1 * 100
                diff = (kd - student).dropna()
                ci = t_interval(diff.tolist())
                out.append({"regime": entry, "student": m, "method": method, "n": len(diff),
                            "teacher F1": teacher.mean(), "STUDENT F1": student.mean(), "KD F1": kd.mean(),
                            "gain": diff.mean(), "ci95 low": ci[0] if ci else float("nan"),
                            "ci95 high": ci[1] if ci else float("nan"), "p": paired_p(kd, student)})
    return pd.DataFrame(out)


def contrasts(rows: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Per KD method, gain(shared) - gain(specific) over the results ``rows`` of a run, with Welch's p."""
    from scipy.stats import ttest_ind

    rows = rows[(rows.status == "finished") & (rows.modality == "depth")]
    per_seed = {}
    for entry in ("shared", "specific"):
        sub = rows[rows.entry == entry]
        student = sub[sub.method == "student"].set_index("seed").test_f1 * 100
        per_seed[entry] = {m: ((sub[sub.method == m].set_index("seed").test_f1 * 100) - student).dropna() for m in methods}
    out = []
    for m in methods:
        a, b = per_seed["shared"][m], per_seed["specific"][m]
        p = float(ttest_ind(a, b, equal_var=False).pvalue) if len(a) > 1 and len(b) > 1 else float("nan")
        out.append({"method": m, "gain shared": a.mean(), "gain specific": b.mean(), "contrast": a.mean() - b.mean(),
                    "p (Welch)": p})
    return pd.DataFrame(out)


def compare_marks(here: pd.DataFrame, there: pd.DataFrame) -> pd.DataFrame:
    """Cell by cell: this run's mark, interval and Holm p against the other run's mean, mark and Holm p.
    A cell present in one run only counts as a changed mark (it cannot be promised)."""
    both = here.merge(there, on=["dataset", "row"], how="outer", suffixes=("", " other"))
    both["same mark"] = both["mark"] == both["mark other"]
    both["inside interval"] = (both["ci95_low"] <= both["mean other"]) & (both["mean other"] <= both["ci95_high"])
    return both[["dataset", "row", "mean", "ci95_low", "ci95_high", "p_holm", "mark", "mean other", "p_holm other",
                 "mark other", "same mark", "inside interval"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="source", help="a finished default benchmark folder (no run)")
    ap.add_argument("--out", help="benchmark folder for a new run (default: a temporary one)")
    ap.add_argument("--set", action="append", default=[], dest="sets", help="config override, as cmkd bench --set")
    ap.add_argument("--check", action="store_true", help="exit 1 unless the expected effects hold (and, with "
                    "--same-marks, every mark is the same)")
    ap.add_argument("--same-marks", metavar="OTHER", help="a finished run of the same config on other kernels or "
                    "threads: compare each Table 1 cell's mark and mean")
    args = ap.parse_args(argv)
    t0 = time.time()
    if args.source:
        out = Path(args.source)
    else:
        cfg = load_config("quick", overrides=args.sets)
        out = Path(args.out or tempfile.mkdtemp(prefix="cmkd-controls-"))
        run_bench(cfg, out, say=lambda s: None)
    rows = ResultsStore(out / "results").rows()
    methods = sorted(set(rows[rows.scenario == "cross-modal"].method))
    table = gains(rows, methods)
    print(f"known-answer control on {out} ({time.time() - t0:.0f} s)\n")
    print(tabulate(table.values.tolist(), headers=list(table.columns), tablefmt="github", floatfmt=".2f"))
    contrast = contrasts(rows, methods)
    print("\ncontrast gain(shared) - gain(specific), Welch's t-test:\n")
    print(tabulate(contrast.values.tolist(), headers=list(contrast.columns), tablefmt="github", floatfmt=".3g"))
    ok, lines = controls.verdict(rows)
    print("\n" + "\n".join(lines))
    if args.same_marks:
        ok = _print_comparison(out, Path(args.same_marks), rows) and ok
    return 0 if not args.check or ok else 1


def _print_comparison(here: Path, there: Path, rows: pd.DataFrame) -> bool:
    """``--same-marks``: ``rows`` are ``here``'s results rows, already read."""
    other = ResultsStore(there / "results").rows()
    cmp = compare_marks(controls.marks(rows), controls.marks(other))
    print(f"\nTable 1 marks, {here} against {there}:\n")
    print(tabulate(cmp.values.tolist(), headers=list(cmp.columns), tablefmt="github", floatfmt=".4g"))
    changed = cmp[~cmp["same mark"]]
    print(f"\nsame marks: {len(cmp) - len(changed)} of {len(cmp)} cells"
          + (f" (changed: {', '.join(changed.dataset + ' ' + changed.row)})" if len(changed) else "")
          + f"; other run's mean inside this run's 95% interval: {int(cmp['inside interval'].sum())} of {len(cmp)}")
    same, n, largest = same_outputs(rows, other)
    print(f"trial outputs in both runs: {n}; equal to 1e-9 points: {same}; largest difference: {largest:.3g} points "
          "of test F1")
    return changed.empty


def same_outputs(here: pd.DataFrame, there: pd.DataFrame) -> tuple[int, int, float]:
    """Every trial output both runs' results rows hold (the same trial id: the same spec), compared digit for
    digit: how many have equal test F1 (to 1e-9 points), out of how many, and the largest difference in points."""
    key = ["trial_id", "modality"]
    both = here[[*key, "test_f1"]].merge(there[[*key, "test_f1"]], on=key, suffixes=("", " other"))
    diff = (100 * (both["test_f1"] - both["test_f1 other"])).abs()
    return int((diff <= 1e-9).sum()), len(both), float(diff.max()) if len(both) else 0.0


if __name__ == "__main__":
    sys.exit(main())
