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

from .errors import UserError

KD_METHODS = ["kdv1", "kdv2", "dkd", "ctkd", "mlkd"]
KD_LABELS = {"kdv1": "KDv1", "kdv2": "KDv2", "dkd": "DKD", "ctkd": "CTKD", "mlkd": "MLKD",
             "mlkd-discomkd-code": "MLKD (authors' code)"}
ABLATION_ROWS = {3: ["no-adv", "no-mod", "no-aux", "no-orth"], 4: ["only-inv", "only-inf"]}
ABLATION_LABELS = {"no-adv": "w/o L_adv", "no-mod": "w/o L_mod", "no-aux": "w/o L_aux", "no-orth": "w/o L_perp",
                   "only-inv": "z_inv only", "only-inf": "z_inf only", "": "DisCoM-KD (full)"}
DATASET_LABELS = {"sunrgbd": "SUNRGBD", "eurosat-ms-sar": "EuroSat-MS-SAR", "tristar": "TRISTAR", "synthetic": "Synthetic"}
TITLES = {1: "Table 1: cross-modal scenario (teacher on the rich modality), weighted F1 (%)",
          2: "Table 2: multi-modal scenario (two-branch teacher), weighted F1 (%)",
          3: "Table 3: DisCoM-KD loss ablation, weighted F1 (%)",
          4: "Table 4: DisCoM-KD representation ablation, weighted F1 (%)"}
UP, DOWN = "↑", "↓"
#: (dataset, column) of a printed average in the paper's numbers (``dataset=all, modality=avg``)
PRINTED_AVG = ("all", "avg")
#: tables with an Avg column (the paper prints one for Tables 3 and 4)
AVG_TABLES = (3, 4)
ALPHA = 0.05


def rich_modality(dataset: str) -> str | None:
    from cmkd.datasets import DATASETS

    cls = DATASETS.get(dataset)
    return cls.rich if cls is not None and cls.rich else None


# ---- long-form cells --------------------------------------------------------------------------------
def cells_from_results(rows: pd.DataFrame) -> pd.DataFrame:
    """Results rows (one per trial output) -> table cells: table, dataset, column, row, seed, f1 (%)."""
    df = rows[rows.status == "finished"].copy()
    if df.empty:
        return pd.DataFrame(columns=["table", "dataset", "column", "row", "seed", "f1"])
    out = []
    for ds, sub in df.groupby("dataset"):
        rich = rich_modality(ds)
        mods = sorted(set(sub.modality) - {"all", None}, key=lambda m: (m != rich, m))
        if rich is None and mods:
            rich = mods[0]
        poor = [m for m in mods if m != rich]
        for r in sub.itertuples():
            f1 = 100 * float(r.test_f1)
            base = {"dataset": ds, "seed": int(r.seed), "f1": f1}
            if r.method == "student":
                if r.modality == rich:
                    out += [{**base, "table": 1, "column": m, "row": "teacher"} for m in poor]
                else:
                    out.append({**base, "table": 1, "column": r.modality, "row": "student"})
                out.append({**base, "table": 2, "column": r.modality, "row": "student"})
            elif r.method == "teacher-mm":
                out += [{**base, "table": 2, "column": m, "row": "teacher"} for m in mods]
            elif r.method == "discomkd":
                if r.variant in ("", None) or (isinstance(r.variant, float) and math.isnan(r.variant)):
                    if r.modality != rich:
                        out.append({**base, "table": 1, "column": r.modality, "row": "discomkd"})
                    out.append({**base, "table": 2, "column": r.modality, "row": "discomkd"})
                    out += [{**base, "table": t, "column": r.modality, "row": "discomkd"} for t in (3, 4)]
                else:
                    t = 3 if r.variant in ABLATION_ROWS[3] else 4
                    out.append({**base, "table": t, "column": r.modality, "row": r.variant})
            elif r.scenario in ("cross-modal", "multi-modal"):
                t = 1 if r.scenario == "cross-modal" else 2
                out.append({**base, "table": t, "column": r.modality, "row": f"{r.method}-{r.variant}"})
    return pd.DataFrame(out)


def cells_from_paper(path: str | Path | None = None) -> pd.DataFrame:
    """The paper's numbers (``results/paper-tables.csv``) as cells (one 'seed': the published mean)."""
    from cmkd.results import paper_tables_path

    df = pd.read_csv(path or paper_tables_path(), keep_default_na=False)
    out = []
    for r in df.itertuples():
        if r.method in ("teacher", "student"):
            row = r.method
        elif r.method == "discomkd":
            row = r.variant or "discomkd"
        else:
            row = f"{r.method}-{'lskd' if r.variant == 'lskd' else 'orig'}"
        cols = [r.modality]
        if r.dataset == PRINTED_AVG[0]:  # the paper's printed Avg column (Tables 3 and 4)
            cols = [PRINTED_AVG[1]]
        elif r.modality == "all":  # the multi-modal teacher spans its data set's columns
            cols = sorted(set(df[(df.table == 2) & (df.dataset == r.dataset) & (df.modality != "all")].modality))
        out += [{"table": int(r.table), "dataset": r.dataset, "column": c, "row": row, "seed": 0, "f1": float(r.f1)}
                for c in cols]
    return pd.DataFrame(out)


# ---- one table ---------------------------------------------------------------------------------------
def row_order(table: int, rows_present: set[str]) -> list[tuple[str, str, str]]:
    """(row key, label, sub-label) in the paper's order; KD rows of methods beyond the paper's five follow."""
    if table in (1, 2):
        order = [("teacher", "TEACHER", ""), ("student", "STUDENT", "")]
        extra = sorted({r.rsplit("-", 1)[0] for r in rows_present if r.endswith(("-orig", "-lskd"))} - set(KD_METHODS))
        for m in KD_METHODS + extra:
            order += [(f"{m}-orig", KD_LABELS.get(m, m), "ORIG"), (f"{m}-lskd", "", "w/ LSKD")]
        order.append(("discomkd", "DisCoM-KD", ""))
        return order
    return [(a, ABLATION_LABELS[a], "") for a in ABLATION_ROWS[table]] + [("discomkd", "DisCoM-KD (full)", "")]


@dataclass
class Cell:
    mean: float | None
    std: float | None = None
    n: int = 0
    arrow: str = ""
    best: bool = False
    significant: bool | None = None  # None: no test (no STUDENT pair or fewer than 2 seeds)
    p_value: float | None = None
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


def paired_test(a: pd.Series, b: pd.Series) -> tuple[bool | None, float | None]:
    """Paired t-test across seeds (same seed = same split); None when fewer than 2 pairs."""
    from scipy.stats import ttest_rel

    pairs = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    if len(pairs) < 2:
        return None, None
    diff = pairs.a - pairs.b
    if np.allclose(diff, diff.iloc[0]):  # no spread: the t statistic is undefined
        shifted = not np.isclose(diff.iloc[0], 0)
        return shifted, (0.0 if shifted else 1.0)
    p = float(ttest_rel(pairs.a, pairs.b).pvalue)
    return p < ALPHA, p


def build_table(cells: pd.DataFrame, number: int, paper: pd.DataFrame | None = None) -> Table:
    sub = cells[cells.table == number]
    printed = sub[(sub.dataset == PRINTED_AVG[0]) & (sub.column == PRINTED_AVG[1])]
    sub = sub.drop(printed.index)
    datasets = [d for d in ["sunrgbd", "eurosat-ms-sar", "tristar"] if d in set(sub.dataset)]
    datasets += sorted(set(sub.dataset) - set(datasets))
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
                table.cells[(key, col)] = Cell(round(float(v.f1.mean()), 2), float(v.f1.std(ddof=0)), len(v))
            if paper is not None:
                pv = paper[(paper.table == number) & (paper.row == key) & (paper.dataset == col[0]) & (paper.column == col[1])]
                table.cells[(key, col)].paper = float(pv.f1.iloc[0]) if len(pv) else None
    distilled = [k for k, _, _ in table.rows if k not in ("teacher", "student")]
    for col in columns:
        student = table.cells.get(("student", col))
        st_seeds = sub[(sub.row == "student") & (sub.dataset == col[0]) & (sub.column == col[1])].set_index("seed").f1
        best_val = -1.0
        for k in distilled:
            c = table.cells[(k, col)]
            if c.mean is None:
                continue
            if student is not None and student.mean is not None and number in (1, 2):
                c.arrow = UP if c.mean > student.mean else DOWN
                seeds = sub[(sub.row == k) & (sub.dataset == col[0]) & (sub.column == col[1])].set_index("seed").f1
                c.significant, c.p_value = paired_test(seeds, st_seeds)
            best_val = max(best_val, c.mean)
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
        name = DATASET_LABELS.get(d, d)
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


def latex(table: Table, std: bool = False, compare: bool = False) -> str:
    """A booktabs tabular (the body of a table environment)."""
    head = header(table, "latex")
    lines = [r"\begin{tabular}{ll" + "r" * (len(head) - 2) + "}", r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
    for i, row in enumerate(body(table, "latex", std, compare)):
        key = table.rows[i][0]
        if key in ("kdv1-orig", "discomkd") and table.number in (1, 2):
            lines.append(r"\midrule")
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
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
    wall = df.set_index("trial_id").wall_time_s.to_dict()
    df["teacher_s"] = df.teacher_id.map(lambda t: wall.get(t, 0.0) if isinstance(t, str) and t else 0.0)
    df["total_s"] = df.wall_time_s + df.teacher_s
    df["row"] = df.apply(lambda r: r.method + (f" ({r.variant})" if isinstance(r.variant, str) and r.variant else "")
                         + (f" [{r.scenario}]" if r.scenario in ("cross-modal", "multi-modal") else ""), axis=1)
    g = df.groupby(["dataset", "row"]).agg(trials=("trial_id", "count"), own_s=("wall_time_s", "mean"),
                                           with_teacher_s=("total_s", "mean"), images_per_s=("images_per_s", "mean"))
    return g.round(2).reset_index()


def plot(table: Table, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k, _, _ in table.rows]
    cols = table.columns
    if not cols:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(keys) * max(1, len(cols)) / 2), 4.5))
    width = 0.8 / max(1, len(cols))
    x = np.arange(len(keys))
    for j, col in enumerate(cols):
        means = [table.cells[(k, col)].mean for k in keys]
        stds = [table.cells[(k, col)].std or 0.0 for k in keys]
        # a missing cell is a gap (no bar), never a zero-height bar
        present = [i for i, m in enumerate(means) if m is not None]
        ax.bar(x[present] + j * width, [means[i] for i in present], width, yerr=[stds[i] for i in present],
               capsize=2, alpha=0.9, label=f"{DATASET_LABELS.get(col[0], col[0])} {col[1]}")
    ax.set_xticks(x + width * (len(cols) - 1) / 2)
    ax.set_xticklabels(row_names(table), rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("weighted F1 (%)")
    ax.set_title(TITLES[table.number].split(",")[0])
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---- the whole report --------------------------------------------------------------------------------
def load_rows(folder: str | Path) -> pd.DataFrame:
    from .results import ResultsStore

    folder = Path(folder)
    if not (folder / "results").is_dir() or not list((folder / "results").glob("*.json")):
        raise UserError(f"{folder} holds no results (no results/*.json); run cmkd bench --out {folder} first")
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
                out.append({"dataset": r["tags.dataset"], "scenario": r["tags.scenario"], "method": r["tags.method"],
                            "variant": r.get("tags.variant", "") or "", "modality": key, "seed": int(r["tags.seed"]),
                            "test_f1": float(r[col]), "status": "finished", "trial_id": r["tags.trial_id"],
                            "teacher_id": r.get("tags.teacher_id", ""), "wall_time_s": r.get("metrics.wall_time_s", 0.0),
                            "images_per_s": np.nan, "config_hash": r.get("tags.config_hash")})
    return pd.DataFrame(out)


def write_report(cells: pd.DataFrame, out: Path, rows: pd.DataFrame | None = None, std: bool = False,
                 compare: bool = False, tables: tuple[int, ...] = (1, 2, 3, 4), echo=print) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    paper = cells_from_paper() if compare else None
    md, tex, missing, mismatches = [], [], [], []
    for n in tables:
        if cells.empty or not (cells.table == n).any():
            missing.append(f"table {n}: no results")
            continue
        t = build_table(cells, n, paper)
        echo(render(t, "terminal", std, compare) + "\n")
        md.append(render(t, "markdown", std, compare))
        tex.append(f"% {TITLES[n]}\n" + latex(t, std, compare))
        wide_frame(t).to_csv(out / f"table{n}.csv")
        plot(t, out / f"table{n}.png")
        gaps = t.missing()
        if gaps:
            missing.append(f"table {n}: {len(gaps)} missing cell(s), e.g. {', '.join(gaps[:3])}")
        mismatches += t.average_mismatches()
    notes = ["Cells: mean test weighted F1 (%) over seeds; arrows against STUDENT of the same column; "
             "best distilled result of each column in bold; 'ns': not significant in a paired t-test across seeds "
             f"against STUDENT (alpha {ALPHA}); '-': missing."]
    if mismatches:
        notes.append("Avg as printed in the paper; where it differs from the mean of the printed cells: "
                     + "; ".join(mismatches) + " (the paper presumably averaged unrounded values).")
    (out / "tables.md").write_text("\n\n".join(md + notes) + "\n")
    (out / "tables.tex").write_text("\n\n".join(tex) + "\n")
    cells.to_csv(out / "cells.csv", index=False)
    if rows is not None:
        rows.to_parquet(out / "results.parquet", engine="pyarrow", index=False)
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
    for m in mismatches:
        echo(f"note: {m}")
    return out


def write_all_tables(bench_folder: str | Path, echo=print) -> Path:
    rows = load_rows(bench_folder)
    return write_report(cells_from_results(rows), Path(bench_folder) / "tables", rows, echo=echo)
