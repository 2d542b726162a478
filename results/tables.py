"""One of the paper's weighted-F1 tables (1-4) built from long-form cells: its columns, its rows in the
paper's order, and per cell the mean over seeds, the 95% interval, the arrow and the paired test against
STUDENT (Holm-corrected within the column), and the best distilled value.

Cells are the mean over seeds of the test weighted F1 in percent (two decimals); the standard
deviation is the population form (numpy's default, as the official ``restore_*.py`` scripts).
Distilled rows carry an arrow against STUDENT of the same column: up where the mean beats it,
down otherwise. The best distilled value of each column is marked. Missing cells show as '-'.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .cells import (AVG_TABLES, METRICS, PRINTED_AVG, STUDENT, TEACHER, TITLES, _method, _registered, dataset_label,
                    rich_modality, split_key)
from .stats import ALPHA, holm, paired_p, t_interval

UP, DOWN = "↑", "↓"
F1_LABEL = METRICS["f1"][1]


def row_order(table: int, rows_present: set[str]) -> list[tuple[str, str, str]]:
    """(row key, label, sub-label) in the paper's order: its methods (declared ``paper_row``) always, with
    '-' where missing; then any other method with results ("other methods": distilled, then standalone)."""
    from cmkd.methods import METHODS

    def label(name: str) -> str:
        cls = _method(name)
        return cls.table_label() if cls is not None else name

    if table in (1, 2):
        order = [(TEACHER, "TEACHER", ""), (STUDENT, "STUDENT", "")]
        variants: dict[str, set[str]] = {}
        for key in rows_present - {TEACHER, STUDENT}:
            name, _, variant = key.partition("|")
            variants.setdefault(name, set()).update({variant} if variant else set())
        paper = sorted((c for c in METHODS.values() if c.paper_row is not None and c.role() != "reference"),
                       key=lambda c: c.paper_row)
        others = sorted(set(variants) - {c.name for c in paper}, key=lambda n: (not variants[n], n))
        for name in [c.name for c in paper] + others:
            cls = _method(name)
            distilled = bool(variants.get(name)) or (cls is not None and cls.role() == "distilled")
            if not distilled:
                order.append((name, label(name), ""))
                continue
            vs = sorted(variants.get(name, set()) | ({"orig", "lskd"} if cls is not None and cls.paper_row else set()),
                        key=lambda v: (v != "orig", v))
            subs = {"orig": "ORIG", "lskd": "w/ LSKD"}
            order += [(f"{name}|{v}", label(name) if i == 0 else "", subs.get(v, v)) for i, v in enumerate(vs)]
        return order
    order = []
    owners = sorted({c.name for c in METHODS.values() if any(t == table for t, _ in c.ablations.values())}
                    | {k.split(":")[0] for k in rows_present if ":" in k})
    for name in owners:
        cls = _method(name)
        declared = [(a, lab) for a, (t, lab) in cls.ablations.items() if t == table] if cls is not None else []
        extra = sorted({k.split(":", 1)[1] for k in rows_present if k.startswith(f"{name}:")} - {a for a, _ in declared})
        order += [(f"{name}:{a}", lab, "") for a, lab in declared] + [(f"{name}:{a}", a, "") for a in extra]
        order.append((name, f"{label(name)} (full)", ""))
    return order


def row_group(key: str) -> str:
    """Rows of one group share a block in LaTeX (midrules between groups)."""
    if key in (TEACHER, STUDENT):
        return "reference"
    cls = _method(key.split("|")[0].split(":")[0])
    paper = cls is not None and cls.paper_row is not None
    return f"{'paper' if paper else 'other'}-{'distilled' if '|' in key else 'standalone'}"


@dataclass
class Cell:
    mean: float | None
    std: float | None = None
    n: int = 0
    arrow: str = ""
    best: bool = False
    significant: bool | None = None  # on the Holm-corrected p; None: no test (no STUDENT pair, < 2 seeds)
    p_value: float | None = None  # paired t-test against STUDENT of the column, uncorrected
    p_holm: float | None = None  # corrected within the column (the family: every row tested there)
    #: mean difference to STUDENT over the seeds both have (the paired test's); its sign gives the arrow
    diff: float | None = None
    ci: tuple[float, float] | None = None  # 95% t interval of the mean (sample std); None below 2 seeds
    paper: float | None = None


@dataclass
class Table:
    number: int
    columns: list[tuple[str, str]]  # (dataset, column modality)
    rows: list[tuple[str, str, str]]
    cells: dict[tuple[str, tuple[str, str]], Cell] = field(default_factory=dict)
    average: dict[str, float | None] = field(default_factory=dict)  # mean of the row's cells
    printed_average: dict[str, float] = field(default_factory=dict)  # the paper's own Avg, where the source has one
    #: the cells are published means (the paper's tables): no per-seed values, so no test was ever possible
    published: bool = False
    #: what the cells hold (``cells.METRICS``' label): weighted F1 unless a table of another score was asked for
    metric: str = F1_LABEL

    def title(self) -> str:
        return TITLES[self.number].replace(F1_LABEL, self.metric)

    def shown_average(self, key: str) -> float | None:
        """The Avg shown: the printed one when the source has it (the paper's tables as printed), else computed."""
        return self.printed_average.get(key, self.average.get(key))

    def average_mismatches(self) -> list[str]:
        """Rows whose printed Avg differs from the mean of their printed cells (rounded to two decimals)."""
        out = []
        for key, printed in self.printed_average.items():
            computed = self.average.get(key)
            if computed is not None and f"{computed:.2f}" != f"{printed:.2f}":
                label = next((lab for k, lab, _ in self.rows if k == key), key)
                out.append(f"table {self.number}, {label}: printed Avg {printed:.2f}, mean of the printed cells "
                           f"{computed:.4f}")
        return out

    def missing(self) -> list[str]:
        return [f"{key} @ {d}/{c}" for key, _, _ in self.rows for d, c in self.columns
                if self.cells[(key, (d, c))].mean is None]


def dataset_order(name: str) -> tuple:
    """The paper's data sets in the paper's column order, then the others by name."""
    col = getattr(_registered(name), "paper_column", None)
    return (col is None, col or 0, name)


def build_table(cells: pd.DataFrame, number: int, paper: pd.DataFrame | None = None, metric: str = "f1") -> Table:
    """Table ``number`` of the cells, with its statistics; ``metric`` names what the cells hold (``METRICS``)."""
    sub = cells[cells.table == number]
    printed = sub[(sub.dataset == PRINTED_AVG[0]) & (sub.column == PRINTED_AVG[1])]
    sub = sub.drop(printed.index)
    datasets = sorted(set(sub.dataset), key=dataset_order)
    columns = []
    for d in datasets:
        rich = rich_modality(d)
        mods = sorted(set(sub[sub.dataset == d].column), key=lambda m: (m != rich, m))
        columns += [(d, m) for m in mods]
    table = Table(number, columns, row_order(number, set(sub.row)),
                  published="published" in sub and bool(len(sub)) and bool(sub.published.fillna(False).all()),
                  metric=METRICS[metric][1])
    for key, _, _ in table.rows:
        for col in columns:
            v = sub[(sub.row == key) & (sub.dataset == col[0]) & (sub.column == col[1])]
            if v.empty:
                table.cells[(key, col)] = Cell(None)
            else:
                table.cells[(key, col)] = Cell(round(float(v.f1.mean()), 2), float(v.f1.std(ddof=0)), len(v),
                                               ci=t_interval(v.f1.tolist()))
            if paper is not None:
                pv = paper[(paper.table == number) & (paper.row == key) & (paper.dataset == col[0]) & (paper.column == col[1])]
                table.cells[(key, col)].paper = float(pv.f1.iloc[0]) if len(pv) else None
    distilled = [k for k, _, _ in table.rows if k not in (TEACHER, STUDENT)]
    for col in columns:
        student = table.cells.get((STUDENT, col))
        st_seeds = sub[(sub.row == STUDENT) & (sub.dataset == col[0]) & (sub.column == col[1])].set_index("seed").f1
        best_val = -1.0
        tested = []
        for k in distilled:
            c = table.cells[(k, col)]
            if c.mean is None:
                continue
            if student is not None and student.mean is not None and number in (1, 2):
                seeds = sub[(sub.row == k) & (sub.dataset == col[0]) & (sub.column == col[1])].set_index("seed").f1
                shared = st_seeds.reindex(seeds.index).dropna()  # STUDENT may have more seeds (a second stage)
                c.diff = float(seeds[shared.index].mean() - shared.mean()) if len(shared) else c.mean - student.mean
                c.arrow = UP if c.diff > 0 else DOWN
                c.p_value = paired_p(seeds, st_seeds)
                tested.append(c)
            best_val = max(best_val, c.mean)
        for c, adjusted in zip(tested, holm([c.p_value for c in tested])):
            c.p_holm = adjusted
            c.significant = None if adjusted is None else adjusted < ALPHA
        for k in distilled:  # every row that reaches the best value (ties share the mark)
            if table.cells[(k, col)].mean == best_val:
                table.cells[(k, col)].best = True
    if number in AVG_TABLES:
        for k, _, _ in table.rows:
            vals = [table.cells[(k, col)].mean for col in columns]
            table.average[k] = float(np.mean(vals)) if vals and all(v is not None for v in vals) else None
        table.printed_average = {r.row: float(r.f1) for r in printed.itertuples()}
    return table


def has_results(cells: pd.DataFrame, number: int) -> bool:
    """Whether table ``number`` has anything to show: an ablation table needs an ablation's cells (the
    full method's row alone, which Tables 1-2 already show, is no ablation table)."""
    if cells.empty:
        return False
    sub = cells[cells.table == number]
    if number in AVG_TABLES:
        sub = sub[sub.row.str.contains(":", regex=False) | (sub.dataset == PRINTED_AVG[0])]
    return not sub.empty


def row_names(table: Table) -> list[str]:
    """Full row names ("KDv1 ORIG", "KDv1 w/ LSKD", ...) for flat formats."""
    names, last = [], ""
    for _, label, sub in table.rows:
        last = label or last
        names.append(f"{last} {sub}".strip())
    return names


def wide_frame(table: Table) -> pd.DataFrame:
    data = {name: {f"{d}/{c}": table.cells[(key, (d, c))].mean for d, c in table.columns}
            for name, (key, _, _) in zip(row_names(table), table.rows)}
    return pd.DataFrame(data).T


def pairs_frame(table: Table) -> pd.DataFrame | None:
    """Methods x teacher -> student pairs, as the DKD, MLKD and LSKD papers lay them out: the table's rows, one
    column per (data set, pair) holding the mean of that row's cells over the data set's modality columns
    (the mean over seeds in each; '-' unless every column of it has a value). None when the table's columns
    name no pair (the paper's pair alone)."""
    groups = sorted({d for d, _ in table.columns}, key=dataset_order)
    if not any(split_key(d)[1] for d in groups):
        return None
    data = {}
    for d in groups:
        cols = [c for c in table.columns if c[0] == d]
        means = []
        for key, _, _ in table.rows:
            values = [table.cells[(key, c)].mean for c in cols if table.cells[(key, c)].mean is not None]
            means.append(float(np.mean(values)) if len(values) == len(cols) else None)
        data[dataset_label(d)] = means
    return pd.DataFrame(data, index=row_names(table)).dropna(how="all")  # rows that ran in no pair: left out
