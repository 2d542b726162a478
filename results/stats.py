"""Statistics of a table cell across seeds: the t interval, the paired test against STUDENT, Holm.

Seeds pair trials: the same seed is the same split for every method of a data set, so a method and
STUDENT are compared with a paired t-test (scipy's ``ttest_rel``) over the seeds both have. The rows
of one table column are a family of tests against the same STUDENT: their p-values are corrected
with Holm's step-down method before anything is called significant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

ALPHA = 0.05


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """The two-sided ``level`` t interval of the mean (sample std); None below two values."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return None
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return float(x.mean() - half), float(x.mean() + half)


def paired_p(a: pd.Series, b: pd.Series) -> float | None:
    """p of a paired t-test of ``a`` against ``b`` over their shared index (seeds); None below two pairs.

    With no spread in the differences the t statistic is undefined: p is 0 for a constant non-zero
    shift and 1 for none."""
    from scipy.stats import ttest_rel

    pairs = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    if len(pairs) < 2:
        return None
    diff = pairs.a - pairs.b
    if np.allclose(diff, diff.iloc[0]):
        return 0.0 if not np.isclose(diff.iloc[0], 0) else 1.0
    return float(ttest_rel(pairs.a, pairs.b).pvalue)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (step-down, monotone, capped at 1), in the input order; None stays None."""
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    m = len(present)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
