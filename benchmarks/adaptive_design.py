"""The error rates of the second stage (``adaptive.seeds``), simulated for one paired test against STUDENT.

A cell's per-seed differences to STUDENT are drawn as normal with mean ``effect`` (in units of their
standard deviation). At the first seeds a cell whose p lies in the band gets the second seeds and is tested
on all of them; any other cell is decided on the first seeds. Printed per effect size: how often the cell is
called significant (alpha 0.05) by the two-stage plan, by the first seeds alone and by all the seeds for
every cell, and how often the plan extends the cell. Effect 0 gives the false-positive rate: the plan must
not exceed alpha. One test, no Holm correction (the table applies Holm on top, which only lowers the rate).

    python benchmarks/adaptive_design.py [--profile quick] [--band 0.005 0.3] [--draws 200000]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import ttest_1samp

from cmkd.harness.sweep.adaptive import band_text
from cmkd.harness.sweep.bench_config import load_config

ALPHA = 0.05
EFFECTS = (0.0, 0.5, 0.8, 1.0, 1.5)


def rates(effect: float, n1: int, n2: int, band: tuple[float, float], draws: int, rng) -> tuple[float, ...]:
    """(two-stage plan, first seeds only, all seeds always, share extended) for one effect size."""
    d = rng.normal(effect, 1.0, size=(draws, n1 + n2))
    p1 = ttest_1samp(d[:, :n1], 0, axis=1).pvalue
    p_all = ttest_1samp(d, 0, axis=1).pvalue
    lo, hi = band
    extended = (p1 >= lo) & ((p1 < hi) | (hi >= 1))
    plan = np.where(extended, p_all < ALPHA, p1 < ALPHA)
    return float(plan.mean()), float((p1 < ALPHA).mean()), float((p_all < ALPHA).mean()), float(extended.mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--band", type=float, nargs=2, help="override the profile's band")
    ap.add_argument("--draws", type=int, default=200_000)
    args = ap.parse_args()
    cfg = load_config(args.profile)
    n1, n2 = len(cfg.seeds), len(cfg.adaptive.seeds)
    if not n2:
        raise SystemExit(f"profile {args.profile} has no second stage (adaptive.seeds)")
    band = tuple(args.band) if args.band else cfg.adaptive.band
    rng = np.random.default_rng(0)
    print(f"{n1} seeds, then {n2} more where p lies in {band_text(band)}; {args.draws} simulated cells per "
          f"effect; alpha {ALPHA}")
    print(f"{'effect (sd)':>12} {'two-stage':>10} {f'{n1} seeds':>10} {f'{n1 + n2} seeds':>10} {'extended':>10}")
    for effect in EFFECTS:
        plan, first, both, extended = rates(effect, n1, n2, band, args.draws, rng)
        print(f"{effect:12.1f} {plan:10.3f} {first:10.3f} {both:10.3f} {extended:10.3f}")
    null = rates(0.0, n1, n2, band, args.draws, np.random.default_rng(1))[0]
    print(f"false-positive rate of the two-stage plan: {null:.3f} ({'within' if null <= ALPHA + 0.002 else 'ABOVE'} "
          f"alpha {ALPHA}, a second draw)")


if __name__ == "__main__":
    main()
