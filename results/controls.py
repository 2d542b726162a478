"""The known-answer verdict of the built-in data's two regimes, read from Table 1's own statistics.

On the synthetic data, the ``shared`` regime puts the class signal that decides the rich modality into the
poor one too, so logit KD from the rich teacher must beat STUDENT there; the ``specific`` regime does not,
so no KD method may. A run that holds both regimes carries its own check of the harness:
``benchmarks/controls.py --check`` asserts it, and the report shows it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: the synthetic entries whose known answer the verdict reads (``entry`` labels of the quick profile)
SHARED, SPECIFIC = "shared", "specific"


def marks(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 1's cells with their mark against STUDENT: "up" or "down" (significant after Holm within
    the column, as the table marks it) or "ns"; the STUDENT and TEACHER rows have none."""
    from .report import stats_frame

    st = stats_frame(rows, tables=(1,))
    if st.empty:
        return pd.DataFrame(columns=["dataset", "row", "mean", "ci95_low", "ci95_high", "p_holm", "mark"])
    st = st[~st.row.isin(["STUDENT", "TEACHER"])].copy()
    above = st["diff_vs_student"] > 0  # over the seeds both have, as the paired test and the table's arrow
    sig = st.significant.fillna(False).astype(bool)
    st["mark"] = np.where(sig & above, "up", np.where(sig, "down", "ns"))
    return st[["dataset", "row", "mean", "ci95_low", "ci95_high", "p_holm", "mark"]].reset_index(drop=True)


def holds_both_regimes(rows: pd.DataFrame) -> bool:
    """Whether the rows hold Table 1 of both synthetic regimes (else there is no known answer to read)."""
    done = rows[(rows.status == "finished") & (rows.dataset == "synthetic")]
    return {SHARED, SPECIFIC} <= set(done.entry.fillna(""))


def verdict(rows: pd.DataFrame) -> tuple[bool, list[str]]:
    """The default benchmark's claim: two or more distilled methods significantly above STUDENT in the shared
    column, KDv1 among them, and none in the specific column (Holm within the column: exactly the table's)."""
    from cmkd.methods import METHODS

    m = marks(rows)
    distilled = m[m.row.map(lambda r: (METHODS.get(r.split("|")[0]) is not None
                                       and METHODS[r.split("|")[0]].role() == "distilled"))]
    up = distilled[distilled.mark == "up"]
    gains = {d: sorted(up[up.dataset == d].row) for d in sorted(set(m.dataset))}
    shared = next((d for d in gains if d.endswith(f":{SHARED}")), None)
    specific = next((d for d in gains if d.endswith(f":{SPECIFIC}")), None)
    ok = (shared is not None and specific is not None and len(gains[shared]) >= 2 and "kdv1|orig" in gains[shared]
          and not gains[specific])
    lines = [f"{d}: distilled methods significantly above STUDENT (Holm): {', '.join(v) or 'none'}" for d, v in gains.items()]
    lines.append("verdict: " + ("holds" if ok else "does NOT hold") + " (expected: two or more in the shared column, "
                 "kdv1 among them; none in the specific column)")
    return ok, lines
