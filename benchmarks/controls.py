"""The known-answer control: does cross-modal KD help exactly where the modality focusing hypothesis
says it should? One run of the real benchmark (Ray Tune, MLflow, the results store) on the built-in
data set's two regimes, then, per regime and KD method, the gain over STUDENT on the poor modality:
mean, 95% t interval and paired p over seeds (the same seed is the same split, so the test is paired).

- ``shared`` (synthetic ``shared=1``): the class signal that decides the rich modality (rgb) is also
  in the poor one (depth). Expected: logit KD from the rgb teacher beats STUDENT on depth.
- ``specific`` (``shared=0``): rgb is decided by a signal depth does not have. Expected: no gain.

    python benchmarks/controls.py [--seeds 5] [--methods kdv1,kdv2,dkd,ctkd,mlkd] [--out DIR] [--check]

Also per method, the contrast the hypothesis predicts: gain(shared) - gain(specific), with Welch's
t-test (the two regimes are different data, so the seeds do not pair across them).

``--check`` exits 1 unless plain logit KD (``kdv1``: soft labels only) gains significantly (p < 0.05)
in the shared regime and no method gains significantly in the specific one. The data sets, sizes,
epochs and learning rate are the quick profile's (``harness/profiles/quick.toml``), so these numbers
describe its Table 1.
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
from cmkd.results.stats import ALPHA, paired_p, t_interval
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


def contrasts(folder: Path, methods: list[str]) -> pd.DataFrame:
    from scipy.stats import ttest_ind

    rows = ResultsStore(folder / "results").rows()
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--methods", default="kdv1,kdv2,dkd,ctkd,mlkd")
    ap.add_argument("--out", help="benchmark folder (default: a temporary one)")
    ap.add_argument("--check", action="store_true", help="exit 1 unless both expected effects hold")
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    cfg = load_config("quick", overrides=[f"seeds={list(range(args.seeds))}", f"methods={methods}",
                                          "scenarios=['cross-modal']", "lskd=[false]", "ablations=[]",
                                          "name='controls'"])
    out = Path(args.out or tempfile.mkdtemp(prefix="cmkd-controls-"))
    t0 = time.time()
    run_bench(cfg, out, say=lambda s: None)
    table = gains(ResultsStore(out / "results").rows(), methods)
    print(f"known-answer control: {args.seeds} seeds, {len(methods)} KD methods, quick-profile training "
          f"({cfg.train.epochs} epochs, lr {cfg.train.lr:g}); {time.time() - t0:.0f} s; folder {out}\n")
    print(tabulate(table.values.tolist(), headers=list(table.columns), tablefmt="github", floatfmt=".2f"))
    contrast = contrasts(out, methods)
    print("\ncontrast gain(shared) - gain(specific), Welch's t-test:\n")
    print(tabulate(contrast.values.tolist(), headers=list(contrast.columns), tablefmt="github", floatfmt=".3g"))
    shared = table[table.regime == "shared"]
    specific = table[table.regime == "specific"]
    kd = shared[shared.method == "kdv1"]
    ok_shared = bool(len(kd)) and bool(((kd.p < ALPHA) & (kd.gain > 0)).all())
    ok_specific = bool(len(specific)) and not bool(((specific.p < ALPHA) & (specific.gain > 0)).any())
    print(f"\nshared regime: significant KD gain for {int(((shared.p < ALPHA) & (shared.gain > 0)).sum())}/{len(shared)} "
          f"methods; specific regime: significant KD gain for {int(((specific.p < ALPHA) & (specific.gain > 0)).sum())}/"
          f"{len(specific)} (paired t-test over seeds, alpha {ALPHA}, uncorrected; expected: kdv1 gains in the "
          f"shared regime, nothing gains in the specific one)")
    return 0 if not args.check or (ok_shared and ok_specific) else 1


if __name__ == "__main__":
    sys.exit(main())
