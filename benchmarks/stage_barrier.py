"""What the stage barrier cost: the paper profile's plan (its trial counts and the methods' declared
relative costs), list-scheduled on N slots (GPUs) with the barrier (every student waits for all of stage
1, as the sweep did) and without it (a student waits for its own teacher only, as it does now), in the
launch order the sweep's searcher uses (``harness/schedule.py``). A simulation, no training: costs are
the planner's (``PlannedTrial.cost``: epochs x the method's declared cost per epoch); the three data sets
stand in as synthetic entries of equal size (the paper's own sizes differ, which changes makespans, not
the comparison).

    python benchmarks/stage_barrier.py [--slots 4 32] [--profile paper]
"""

from __future__ import annotations

import argparse
from collections import Counter

from cmkd.harness.sweep.bench_config import load_config
from cmkd.harness.sweep.plan import build_plan, costs
from cmkd.harness.sweep.schedule import Job, simulate


def paper_jobs(profile: str) -> list[Job]:
    cfg = load_config(profile)
    stand_ins = ", ".join(f"{{name='synthetic', label='{e.label or e.name}', options={{n_samples={120 + i}, image_size=16}}}}"
                          for i, e in enumerate(cfg.datasets))  # distinct sizes: distinct entries
    cfg = load_config(profile, overrides=[f"datasets=[{stand_ins}]"])
    plan = build_plan(cfg)
    cost = costs(plan)
    return [Job(p.trial_id, cost[p.trial_id], p.teacher_id, p.stage) for p in plan]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slots", type=int, nargs="+", default=[4, 32])
    ap.add_argument("--profile", default="paper")
    args = ap.parse_args()
    jobs = paper_jobs(args.profile)
    stages = Counter(j.stage for j in jobs)
    total = sum(j.cost for j in jobs)
    print(f"{args.profile} plan: {len(jobs)} trials ({stages[1]} without a teacher, {stages[2]} students), "
          f"{total:,.0f} student-epochs")
    print(f"{'slots':>5}  {'barrier':>12}  {'no barrier':>12}  {'ratio':>6}  {'lower bound':>12}")
    for n in args.slots:
        barrier, free = simulate(jobs, n, barrier=True), simulate(jobs, n, barrier=False)
        bound = max(total / n, max(j.cost for j in jobs))
        print(f"{n:>5}  {barrier:>12,.0f}  {free:>12,.0f}  {free / barrier:>6.3f}  {bound:>12,.0f}")
    print("makespans in student-epochs; ratio = no barrier / barrier; lower bound = max(total / slots, longest trial)")


if __name__ == "__main__":
    main()
