"""The paper's weighted-F1 tables (1-4) from a results store, an MLflow experiment or the paper's
own numbers; in terminal, Markdown, LaTeX (booktabs), CSV and Parquet; plus significance marks,
a cost table and bar charts.

Cells are the mean over seeds of the test weighted F1 in percent (two decimals); the standard
deviation is the population form (numpy's default, as the official ``restore_*.py`` scripts).
Distilled rows carry an arrow against STUDENT of the same column: up where the mean beats it,
down otherwise. The best distilled value of each column is marked. Missing cells show as '-'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cmkd.methods import FUSED

from .config import data_key
from .errors import UserError, nearest
from .stats import ALPHA, holm, paired_p, t_interval

TITLES = {1: "Table 1: cross-modal scenario (teacher on the rich modality), weighted F1 (%)",
          2: "Table 2: multi-modal scenario (two-branch teacher), weighted F1 (%)",
          3: "Table 3: DisCoM-KD loss ablation, weighted F1 (%)",
          4: "Table 4: DisCoM-KD representation ablation, weighted F1 (%)"}
UP, DOWN = "↑", "↓"
#: the row keys of the reference rows (every other row key is a method's: ``m|variant``, ``m``, ``m:ablation``)
TEACHER, STUDENT = "TEACHER", "STUDENT"
#: (dataset, column) of a printed average in the paper's numbers (``dataset=all, modality=avg``)
PRINTED_AVG = ("all", "avg")
#: tables with an Avg column (the paper prints one for Tables 3 and 4)
AVG_TABLES = (3, 4)


def _registered(key: str):
    from cmkd.datasets import DATASETS

    return DATASETS.get(key.split(":", 1)[0])


def rich_modality(dataset: str) -> str | None:
    cls = _registered(dataset)
    return cls.rich if cls is not None and cls.rich else None


def dataset_label(dataset: str) -> str:
    cls = _registered(dataset)
    name, _, entry = dataset.partition(":")
    label = (cls.label if cls is not None else "") or name
    return f"{label} ({entry})" if entry else label


def _method(name: str):
    """The registered method class, or None for results of a method not registered here (its rows still show)."""
    from cmkd.methods import METHODS

    return METHODS.get(name)


def _reference(kind: str) -> str:
    from cmkd.methods import teacher_method

    return teacher_method(kind).name


def _blank(v) -> bool:
    return v is None or v == "" or (isinstance(v, float) and math.isnan(v))


def ablation_table(method: str, ablation: str) -> int:
    cls = _method(method)
    return cls.ablations[ablation][0] if cls is not None and ablation in cls.ablations else AVG_TABLES[0]


def full_row_tables(method: str) -> list[int]:
    """The ablation tables where a standalone method's full row appears (those its ablations land in)."""
    cls = _method(method)
    return sorted({t for t, _ in cls.ablations.values()}) if cls is not None else []


# ---- long-form cells --------------------------------------------------------------------------------
def cells_from_results(rows: pd.DataFrame, selection: str = "best-val") -> pd.DataFrame:
    """Results rows (one per trial output) -> table cells: table, dataset, column, row, seed, f1 (%).

    ``selection`` picks the test F1 of each output: at the best validation epoch (the protocol), at the
    last epoch, or the oracle (best test epoch). Row keys: ``TEACHER`` and ``STUDENT`` (the reference
    methods' trials), ``<method>|<variant>`` for a distilled method, ``<method>`` for a standalone method,
    ``<method>:<ablation>`` for an ablation. ``dataset`` is the column group's key (``data_key``)."""
    from .results import SELECTIONS

    if selection not in SELECTIONS:
        raise UserError(f"unknown selection {selection!r}{nearest(selection, list(SELECTIONS))}; valid: "
                        f"{', '.join(SELECTIONS)}")
    df = rows[rows.status == "finished"].copy()
    if df.empty:
        return pd.DataFrame(columns=["table", "dataset", "column", "row", "seed", "f1"])
    column = SELECTIONS[selection]
    if column not in df or df[column].isna().any():
        raise UserError(f"--selection {selection}: {int(df[column].isna().sum()) if column in df else len(df)} "
                        "result(s) have no last-epoch or oracle test F1 (trials run before cmkd-bench recorded the "
                        "test F1 of every epoch); use --selection best-val, or rerun those trials")
    df["test_f1"] = df[column]
    cross, multi = _reference("cross-modal"), _reference("multi-modal")
    if "entry" not in df:
        df["entry"] = ""
    df["data"] = [data_key(d, e) for d, e in zip(df.dataset, df.entry)]
    out = []
    for ds, sub in df.groupby("data"):
        rich = rich_modality(ds)
        mods = sorted(set(sub.modality) - {FUSED, None}, key=lambda m: (m != rich, m))
        if rich is None and mods:
            rich = mods[0]
        poor = [m for m in mods if m != rich]
        for r in sub.itertuples():
            f1 = 100 * float(r.test_f1)
            base = {"dataset": ds, "seed": int(r.seed), "f1": f1}
            if r.method == cross:
                if r.modality == rich:
                    out += [{**base, "table": 1, "column": m, "row": TEACHER} for m in poor]
                else:
                    out.append({**base, "table": 1, "column": r.modality, "row": STUDENT})
                out.append({**base, "table": 2, "column": r.modality, "row": STUDENT})
            elif r.method == multi:
                out += [{**base, "table": 2, "column": m, "row": TEACHER} for m in mods]
            elif r.scenario in ("cross-modal", "multi-modal"):
                t = 1 if r.scenario == "cross-modal" else 2
                out.append({**base, "table": t, "column": r.modality, "row": f"{r.method}|{r.variant}"})
            elif r.scenario == "ablation":
                out.append({**base, "table": ablation_table(r.method, r.variant), "column": r.modality,
                            "row": f"{r.method}:{r.variant}"})
            elif _blank(r.variant):  # a standalone method's full run: Tables 1 and 2, and its ablation tables
                if r.modality != rich:
                    out.append({**base, "table": 1, "column": r.modality, "row": r.method})
                out.append({**base, "table": 2, "column": r.modality, "row": r.method})
                out += [{**base, "table": t, "column": r.modality, "row": r.method} for t in full_row_tables(r.method)]
    return pd.DataFrame(out)


def cells_from_paper(path: str | Path | None = None) -> pd.DataFrame:
    """The paper's numbers (``results/paper-tables.csv``) as cells (one 'seed': the published mean)."""
    from cmkd.results import paper_tables_path

    df = pd.read_csv(path or paper_tables_path(), keep_default_na=False)
    out = []
    for r in df.itertuples():
        cls = _method(r.method)
        if r.method.upper() in (TEACHER, STUDENT):  # the paper's reference rows
            row = r.method.upper()
        elif cls is not None and r.variant in cls.ablations:
            row = f"{r.method}:{r.variant}"
        elif cls is not None and cls.role() == "distilled":
            row = f"{r.method}|{'lskd' if r.variant == 'lskd' else 'orig'}"
        else:
            row = r.method
        cols = [r.modality]
        if r.dataset == PRINTED_AVG[0]:  # the paper's printed Avg column (Tables 3 and 4)
            cols = [PRINTED_AVG[1]]
        elif r.modality == FUSED:  # the multi-modal teacher spans its data set's columns
            cols = sorted(set(df[(df.table == 2) & (df.dataset == r.dataset) & (df.modality != "all")].modality))
        out += [{"table": int(r.table), "dataset": r.dataset, "column": c, "row": row, "seed": 0, "f1": float(r.f1)}
                for c in cols]
    return pd.DataFrame(out)


# ---- one table ---------------------------------------------------------------------------------------
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


def build_table(cells: pd.DataFrame, number: int, paper: pd.DataFrame | None = None) -> Table:
    sub = cells[cells.table == number]
    printed = sub[(sub.dataset == PRINTED_AVG[0]) & (sub.column == PRINTED_AVG[1])]
    sub = sub.drop(printed.index)
    datasets = sorted(set(sub.dataset), key=dataset_order)
    columns = []
    for d in datasets:
        rich = rich_modality(d)
        mods = sorted(set(sub[sub.dataset == d].column), key=lambda m: (m != rich, m))
        columns += [(d, m) for m in mods]
    table = Table(number, columns, row_order(number, set(sub.row)))
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
                c.arrow = UP if c.mean > student.mean else DOWN
                seeds = sub[(sub.row == k) & (sub.dataset == col[0]) & (sub.column == col[1])].set_index("seed").f1
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


# ---- rendering ---------------------------------------------------------------------------------------
def _fmt(c: Cell, style: str, std: bool, compare: bool) -> str:
    if c.mean is None:
        return "-"
    text = f"{c.mean:.2f}"
    if std and c.n:
        pm = r"$\pm$" if style == "latex" else "±"
        text += f" {pm} {c.std:.2f} (n={c.n})"
    if compare:
        paper = "-" if c.paper is None else f"{c.paper:.2f}"
        delta = "" if c.paper is None else f" ({c.mean - c.paper:+.2f})"
        text = f"{text} / {paper}{delta}"
    if c.arrow:
        text += {"latex": r" $\uparrow$" if c.arrow == UP else r" $\downarrow$"}.get(style, f" {c.arrow}")
    if c.significant is False:
        text += r"$^{\mathrm{ns}}$" if style == "latex" else " ns"
    if c.best:
        text = {"markdown": f"**{text}**", "latex": rf"\textbf{{{text}}}"}.get(style, f"{text} *")
    return text


def header(table: Table, style: str) -> list[str]:
    labels = []
    for d, m in table.columns:
        name = dataset_label(d)
        if table.number == 1:
            rich = rich_modality(d) or "?"
            labels.append(f"{name} {rich.upper()}->{m.upper()}")
        else:
            labels.append(f"{name} {m.upper()}")
    labels = ["Method", ""] + labels + (["Avg"] if table.number in AVG_TABLES else [])
    if style == "latex":
        labels = [lab.replace("->", r"$\rightarrow$").replace("_", r"\_") for lab in labels]
    return labels


def body(table: Table, style: str, std: bool = False, compare: bool = False) -> list[list[str]]:
    out = []
    for key, label, sub in table.rows:
        row = [label, sub] + [_fmt(table.cells[(key, col)], style, std, compare) for col in table.columns]
        if table.number in AVG_TABLES:
            avg = table.shown_average(key)
            row.append("-" if avg is None else f"{avg:.2f}")
        if style == "latex":
            row[0] = row[0].replace("_", r"\_")
        out.append(row)
    return out


def render(table: Table, style: str = "terminal", std: bool = False, compare: bool = False) -> str:
    from tabulate import tabulate

    if style == "latex":
        return latex(table, std, compare)
    fmt = {"terminal": "simple", "markdown": "github"}[style]
    text = tabulate(body(table, style, std, compare), headers=header(table, style), tablefmt=fmt, disable_numparse=True)
    return f"{TITLES[table.number]}\n\n{text}"


def _tex(text: str) -> str:
    return text.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def latex(table: Table, std: bool = False, compare: bool = False) -> str:
    """A booktabs table as the paper sets them: a caption, the data sets as spanning headers over their
    modality columns (``\cmidrule`` under each), then the rows, grouped by ``\midrule``."""
    groups: list[tuple[str, int]] = []
    for d, _ in table.columns:
        if groups and groups[-1][0] == d:
            groups[-1] = (d, groups[-1][1] + 1)
        else:
            groups.append((d, 1))
    avg = table.number in AVG_TABLES
    top = [r"\multicolumn{2}{l}{Method}"] + [rf"\multicolumn{{{n}}}{{c}}{{{_tex(dataset_label(d))}}}" for d, n in groups]
    rules, start = [], 3
    for _, n in groups:
        rules.append(rf"\cmidrule(lr){{{start}-{start + n - 1}}}")
        start += n
    sub = []
    for d, m in table.columns:
        if table.number == 1:
            sub.append(f"{(rich_modality(d) or '?').upper()}" + r"$\rightarrow$" + m.upper())
        else:
            sub.append(m.upper())
    what = "mean test weighted F1 (\\%) over seeds" + (r" $\pm$ std (n seeds)" if std else "") + (
        " / the paper's value (difference)" if compare else "")
    caption = (_tex(TITLES[table.number].split(": ", 1)[1].split(",")[0]) + f": {what}; arrows against STUDENT of the "
               "same column, the best distilled value of each column in bold"
               + ("; ns: not significant against STUDENT (paired t-test, Holm within the column)" if table.number in (1, 2) else ""))
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{caption}}}", rf"\label{{tab:cmkd-table{table.number}}}",
             r"\begin{tabular}{ll" + "r" * (len(table.columns) + avg) + "}", r"\toprule",
             " & ".join(top + ([""] if avg else [])) + r" \\",
             " ".join(rules),
             " & ".join(["", ""] + sub + (["Avg"] if avg else [])) + r" \\", r"\midrule"]
    previous = None
    for i, row in enumerate(body(table, "latex", std, compare)):
        group = row_group(table.rows[i][0])
        if previous is not None and group != previous:
            lines.append(r"\midrule")
        previous = group
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


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


# ---- cost table and plots ---------------------------------------------------------------------------
def cost_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Wall time and images/s per data set and method; a student's cost includes its teacher's,
    DisCoM-KD's one joint run is counted once (not per modality)."""
    df = rows[rows.status == "finished"].drop_duplicates("trial_id").copy()
    if df.empty:
        return pd.DataFrame()
    if "entry" in df:
        df["dataset"] = [data_key(d, e) for d, e in zip(df.dataset, df.entry)]
    wall = df.set_index("trial_id").wall_time_s.to_dict()
    df["teacher_s"] = df.teacher_id.map(lambda t: wall.get(t, 0.0) if isinstance(t, str) and t else 0.0)
    df["total_s"] = df.wall_time_s + df.teacher_s
    df["row"] = df.apply(lambda r: r.method + (f" ({r.variant})" if isinstance(r.variant, str) and r.variant else "")
                         + (f" [{r.scenario}]" if r.scenario in ("cross-modal", "multi-modal") else ""), axis=1)
    g = df.groupby(["dataset", "row"]).agg(trials=("trial_id", "count"), own_s=("wall_time_s", "mean"),
                                           with_teacher_s=("total_s", "mean"), images_per_s=("images_per_s", "mean"))
    return g.round(2).reset_index()


def plot(table: Table, path: Path, published: bool = False) -> Path | None:
    """Horizontal bars, one panel per data set (methods down the side, one bar per modality column), sized
    for a printed page whatever the number of columns: 2.4 in per panel, 0.2 in per bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = table.columns
    # rows with no result in any column (a variant the plan did not run) take no room in the plot
    shown = [(k, name) for (k, _, _), name in zip(table.rows, row_names(table))
             if any(table.cells[(k, c)].mean is not None for c in cols)]
    if not cols or not shown:
        return None
    datasets = list(dict.fromkeys(d for d, _ in cols))
    mods = {d: [m for dd, m in cols if dd == d] for d in datasets}
    widest = max(len(v) for v in mods.values())
    fig, axes = plt.subplots(1, len(datasets), sharey=True, squeeze=False,
                             figsize=(1.4 + 2.4 * len(datasets), 1.4 + 0.2 * len(shown) * widest))
    y = np.arange(len(shown))
    seeds = sorted({table.cells[(k, c)].n for k, _ in shown for c in cols if table.cells[(k, c)].mean is not None})
    for ax, d in zip(axes[0], datasets):
        h = 0.8 / len(mods[d])
        for j, m in enumerate(mods[d]):
            cells = [table.cells[(k, (d, m))] for k, _ in shown]
            at = y + (j - (len(mods[d]) - 1) / 2) * h
            # a missing cell is a gap (no bar), never a zero-length bar
            present = [i for i, c in enumerate(cells) if c.mean is not None]
            label = f"{(rich_modality(d) or '?').upper()}→{m.upper()}" if table.number == 1 else m.upper()
            ax.barh(at[present], [cells[i].mean for i in present], h, label=label, alpha=0.9)
            # whiskers only where an interval exists (two seeds or more): no zero-width caps
            ci = [i for i in present if cells[i].ci]
            if ci:
                lo = [cells[i].mean - cells[i].ci[0] for i in ci]
                hi = [cells[i].ci[1] - cells[i].mean for i in ci]
                ax.errorbar([cells[i].mean for i in ci], at[ci], xerr=[lo, hi], fmt="none", ecolor="black",
                            elinewidth=0.8, capsize=2.5)
        ax.set_title(dataset_label(d), fontsize=10, pad=20)
        # F1 lives in [0, 100]; a t interval may reach past 100 and keeps its cap in view
        tops = [table.cells[(k, (d, m))].ci[1] for k, _ in shown for m in mods[d] if table.cells[(k, (d, m))].ci]
        ax.set_xlim(0, max([100.0] + [t + 2 for t in tops]))
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
        # the legend between the panel's title and its bars: it never hides a bar
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(mods[d]), frameon=False,
                  handlelength=1.2, borderaxespad=0.2)
    axes[0][0].set_yticks(y)
    axes[0][0].set_yticklabels([name for _, name in shown], fontsize=8)
    axes[0][0].invert_yaxis()  # the table's first row on top
    n = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    if published:
        fig.supxlabel("weighted F1 (%): the paper's published means (no per-seed values, so no intervals)", fontsize=8)
    else:
        fig.supxlabel(f"weighted F1 (%): bar = mean over {n} seed(s); whisker = 95% t interval of the mean"
                      + (" (none with one seed)" if seeds and seeds[0] < 2 else ""), fontsize=8)
    fig.suptitle(TITLES[table.number].split(",")[0], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def has_results(cells: pd.DataFrame, number: int) -> bool:
    """Whether table ``number`` has anything to show: an ablation table needs an ablation's cells (the
    full method's row alone, which Tables 1-2 already show, is no ablation table)."""
    if cells.empty:
        return False
    sub = cells[cells.table == number]
    if number in AVG_TABLES:
        sub = sub[sub.row.str.contains(":", regex=False) | (sub.dataset == PRINTED_AVG[0])]
    return not sub.empty


# ---- statistics file ---------------------------------------------------------------------------------
def stats_frame(rows: pd.DataFrame, tables: tuple[int, ...] = (1, 2, 3, 4), selection: str = "best-val") -> pd.DataFrame:
    """One line per table cell: mean, sample std, n, 95% t interval, paired p against STUDENT and its
    Holm correction within the column (Tables 1-2), and the selection gaps: the same cell with the
    last epoch's and the oracle's (best test epoch) test F1, minus the protocol's."""
    from .results import SELECTIONS

    main = cells_from_results(rows, selection)
    others = {}
    for sel in SELECTIONS:
        if sel != selection:
            try:
                others[sel] = cells_from_results(rows, sel)
            except UserError:  # results that predate the per-epoch record: no gap
                pass
    keys = ["table", "dataset", "column", "row"]
    out = []
    for n in tables:
        if not has_results(main, n):
            continue
        table = build_table(main, n)
        names = dict(zip([k for k, _, _ in table.rows], row_names(table)))
        for key, _, _ in table.rows:
            for col in table.columns:
                c = table.cells[(key, col)]
                if c.mean is None:
                    continue
                v = main[(main.table == n) & (main.row == key) & (main.dataset == col[0]) & (main.column == col[1])].f1
                line = {"table": n, "dataset": col[0], "column": col[1], "row": key, "label": names[key],
                        "selection": selection, "n": len(v), "mean": float(v.mean()),
                        "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                        "ci95_low": c.ci[0] if c.ci else float("nan"), "ci95_high": c.ci[1] if c.ci else float("nan"),
                        "p_vs_student": c.p_value, "p_holm": c.p_holm, "significant": c.significant}
                for sel, cells in others.items():
                    w = cells[(cells.table == n) & (cells.row == key) & (cells.dataset == col[0]) & (cells.column == col[1])].f1
                    tag = sel.replace("-", "_")
                    line[f"mean_{tag}"] = float(w.mean()) if len(w) else float("nan")
                    line[f"gap_{tag}"] = line[f"mean_{tag}"] - line["mean"]
                out.append(line)
    df = pd.DataFrame(out)
    return df.sort_values(keys, kind="stable").reset_index(drop=True) if len(df) else df


# ---- the whole report --------------------------------------------------------------------------------
def load_rows(folder: str | Path) -> pd.DataFrame:
    from .results import ResultsStore

    folder = Path(folder)
    if not (folder / "results").is_dir() or not list((folder / "results").glob("*.json")):
        raise UserError(f"{folder} holds no results (no results/*.json); run cmkd bench --out {folder} first")
    bench = folder / "bench.json"
    if bench.is_file():  # methods registered by the benchmark's plugins label their rows
        from .io import read_json
        from .plugins import load_plugins

        load_plugins(tuple(read_json(bench).get("config", {}).get("plugins", ())))
    rows = ResultsStore(folder / "results").rows()
    hashes = set(rows.config_hash.dropna())
    if len(hashes) > 1:
        raise UserError(f"{folder} mixes results of {len(hashes)} benchmark configs ({', '.join(sorted(hashes))}); "
                        "build tables from one benchmark folder each")
    return rows


def rows_from_mlflow(uri: str, experiment: str) -> pd.DataFrame:
    from .tracking import finished_runs

    try:
        df = finished_runs(uri, experiment)
    except UserError:
        raise
    except Exception as exc:  # a store MLflow cannot read
        raise UserError(f"cannot read MLflow experiment {experiment!r} at {uri} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]})") from None
    if df.empty:
        raise UserError(f"MLflow experiment {experiment!r} has no finished runs")
    out = []
    for _, r in df.iterrows():
        for col in df.columns:
            if col.startswith("metrics.test_f1/") and not pd.isna(r[col]):
                key = col[len("metrics.test_f1/"):]
                entry = r.get("tags.entry", "")
                out.append({"dataset": r["tags.dataset"], "entry": entry if isinstance(entry, str) else "",
                            "scenario": r["tags.scenario"], "method": r["tags.method"],
                            "variant": r.get("tags.variant", "") or "", "modality": key, "seed": int(r["tags.seed"]),
                            "test_f1": float(r[col]), "test_f1_last": r.get(f"metrics.last_test_f1/{key}", np.nan),
                            "test_f1_oracle": r.get(f"metrics.oracle_test_f1/{key}", np.nan),
                            "status": "finished", "trial_id": r["tags.trial_id"],
                            "teacher_id": r.get("tags.teacher_id", ""), "wall_time_s": r.get("metrics.wall_time_s", 0.0),
                            "images_per_s": np.nan, "config_hash": r.get("tags.config_hash")})
    return pd.DataFrame(out)


def write_report(cells: pd.DataFrame, out: Path, rows: pd.DataFrame | None = None, std: bool = False,
                 compare: bool = False, tables: tuple[int, ...] = (1, 2, 3, 4), echo=print,
                 selection: str = "best-val", rows_file: bool = True) -> Path:
    """Tables 1-4 in every format, plots, statistics and costs into ``out``. ``rows_file``: also write the
    rows as ``results.parquet`` (a benchmark writes its own once, at its root)."""
    out.mkdir(parents=True, exist_ok=True)
    paper = cells_from_paper() if compare else None
    md, tex, missing, mismatches = [], [], [], []
    for n in tables:
        if not has_results(cells, n):
            missing.append(f"table {n}: no results" + (" (no ablation ran)" if n in AVG_TABLES else ""))
            for stale in (out / f"table{n}.csv", out / f"table{n}.png"):  # from an earlier rendering
                stale.unlink(missing_ok=True)
            continue
        t = build_table(cells, n, paper)
        echo(render(t, "terminal", std, compare) + "\n")
        md.append(render(t, "markdown", std, compare))
        tex.append(latex(t, std, compare))
        wide_frame(t).to_csv(out / f"table{n}.csv")
        plot(t, out / f"table{n}.png", published=rows is None)
        gaps = t.missing()
        if gaps:
            missing.append(f"table {n}: {len(gaps)} missing cell(s), e.g. {', '.join(gaps[:3])}")
        mismatches += t.average_mismatches()
    absent = sorted({d for d in cells.dataset if paper is not None and d not in set(paper.dataset)
                     and d != PRINTED_AVG[0]}, key=dataset_order)
    no_paper = [f"'/ -' in {', '.join(dataset_label(d) for d in absent)} columns: the paper reports no numbers for "
                f"{'this data set' if len(absent) == 1 else 'these data sets'} (--compare-paper compares with "
                "SUNRGBD, EuroSat-MS-SAR and TRISTAR only)"] if absent else []
    chosen = {"best-val": "at each output's best validation epoch (the protocol)", "last": "at the last epoch",
              "oracle": "at the best test epoch (oracle selection: an upper bound, not a result)"}[selection]
    notes = [f"Cells: mean test weighted F1 (%) over seeds, {chosen}; arrows against STUDENT of the same column; "
             "best distilled result of each column in bold; 'ns': not significant in a paired t-test across seeds "
             f"against STUDENT, Holm-corrected within the column (alpha {ALPHA}); '-': missing. "
             "Per-cell statistics (sample std, n, 95% t interval, p, Holm p, selection gaps): stats.csv."]
    notes += no_paper
    if mismatches:
        notes.append("Avg as printed in the paper; where it differs from the mean of the printed cells: "
                     + "; ".join(mismatches) + " (the paper presumably averaged unrounded values).")
    (out / "tables.md").write_text("\n\n".join(md + notes) + "\n")
    (out / "tables.tex").write_text("% cmkd-bench tables; LaTeX packages: booktabs\n\n" + "\n\n".join(tex) + "\n")
    cells.to_csv(out / "cells.csv", index=False)
    if rows is not None:
        if rows_file:
            rows.to_parquet(out / "results.parquet", engine="pyarrow", index=False)
        st = stats_frame(rows, tables, selection)
        st.to_csv(out / "stats.csv", index=False)
        st.to_parquet(out / "stats.parquet", engine="pyarrow", index=False)
        ct = cost_table(rows)
        if not ct.empty:
            from tabulate import tabulate

            ct.to_csv(out / "cost.csv", index=False)
            text = tabulate(ct.values.tolist(), headers=list(ct.columns), tablefmt="github", floatfmt=".2f")
            (out / "cost.md").write_text("Cost per trial (seconds; with_teacher_s adds the teacher's trial)\n\n" + text + "\n")
            echo("Cost per trial (wall seconds, teacher included for distilled students)\n"
                 + tabulate(ct.values.tolist(), headers=list(ct.columns), tablefmt="simple", floatfmt=".2f") + "\n")
    for m in missing:
        echo(f"missing: {m}")
    for m in mismatches + no_paper:
        echo(f"note: {m}")
    return out


def write_all_tables(bench_folder: str | Path, echo=print) -> Path:
    rows = load_rows(bench_folder)
    return write_report(cells_from_results(rows), Path(bench_folder) / "tables", rows, echo=echo, rows_file=False)
