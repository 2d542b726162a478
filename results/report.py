"""A benchmark's whole report: Tables 1-4 in every format, plots, the statistics file and the cost table,
written into one folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cmkd.archs import DEFAULT_ARCH
from cmkd.errors import UserError
from cmkd.harness.engine.spec import data_key

from .cells import AVG_TABLES, METRICS, PRINTED_AVG, cells_from_paper, cells_from_results, dataset_label, load_rows
from .plots import plot
from .record import COST_COLUMNS, SELECTIONS
from .render import latex, render
from .stats import ALPHA
from .tables import build_table, dataset_order, has_results, pairs_frame, row_names, wide_frame


def cost_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Wall time and training images/s per data set, method and network; a student's cost includes its
    teacher's, DisCoM-KD's one joint run is counted once (not per modality). Beside them, what its deployed
    model costs: parameters (M), forward MFLOPs per sample, latency at batch 1 (ms) and images/s at batch 128,
    measured on the run's device (one output's model per trial)."""
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
    for col in ("arch", *COST_COLUMNS):  # results from before architectures and costs were recorded
        if col not in df:
            df[col] = DEFAULT_ARCH if col == "arch" else float("nan")
    df["arch"] = df["arch"].fillna(DEFAULT_ARCH)
    df["params_M"], df["MFLOPs"] = df.params / 1e6, df.flops / 1e6
    g = df.groupby(["dataset", "row", "arch"]).agg(
        trials=("trial_id", "count"), own_s=("wall_time_s", "mean"), with_teacher_s=("total_s", "mean"),
        images_per_s=("images_per_s", "mean"), params_M=("params_M", "mean"), MFLOPs=("MFLOPs", "mean"),
        latency_ms=("latency_ms", "mean"), deploy_images_per_s=("deploy_images_per_s", "mean"))
    return g.round(2).reset_index()


def stats_frame(rows: pd.DataFrame, tables: tuple[int, ...] = (1, 2, 3, 4), selection: str = "best-val",
                metric: str = "f1") -> pd.DataFrame:
    """One line per table cell: mean, sample std, n, 95% t interval, paired p against STUDENT and its
    Holm correction within the column (Tables 1-2), and, for weighted F1, the selection gaps (the same cell
    with the last epoch's and the oracle's (best test epoch) test F1, minus the protocol's) and the cell's
    other scores at the protocol's epoch: ``mean_accuracy``, ``mean_avg_accuracy`` (%), ``mean_kappa`` (x100)."""
    main = cells_from_results(rows, selection, metric)
    others, scores = {}, {}
    for sel in SELECTIONS if metric == "f1" else ():
        if sel != selection:
            try:
                others[sel] = cells_from_results(rows, sel)
            except UserError:  # results that predate the per-epoch record: no gap
                pass
    for name in METRICS if metric == "f1" and selection == "best-val" else ():
        if name != "f1":
            try:
                scores[name] = cells_from_results(rows, selection, name)
            except UserError:  # results that predate the scores: none
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
                        "selection": selection, "metric": metric, "n": len(v), "mean": float(v.mean()),
                        "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                        "ci95_low": c.ci[0] if c.ci else float("nan"), "ci95_high": c.ci[1] if c.ci else float("nan"),
                        "diff_vs_student": c.diff, "p_vs_student": c.p_value, "p_holm": c.p_holm, "significant": c.significant}
                for sel, cells in others.items():
                    w = cells[(cells.table == n) & (cells.row == key) & (cells.dataset == col[0]) & (cells.column == col[1])].f1
                    tag = sel.replace("-", "_")
                    line[f"mean_{tag}"] = float(w.mean()) if len(w) else float("nan")
                    line[f"gap_{tag}"] = line[f"mean_{tag}"] - line["mean"]
                for name, cells in scores.items():
                    w = cells[(cells.table == n) & (cells.row == key) & (cells.dataset == col[0]) & (cells.column == col[1])].f1
                    line[f"mean_{name.replace('-', '_')}"] = float(w.mean()) if len(w) else float("nan")
                out.append(line)
    df = pd.DataFrame(out)
    return df.sort_values(keys, kind="stable").reset_index(drop=True) if len(df) else df


def write_report(cells: pd.DataFrame, out: Path, rows: pd.DataFrame | None = None, std: bool = False,
                 compare: bool = False, tables: tuple[int, ...] = (1, 2, 3, 4), echo=print,
                 selection: str = "best-val", rows_file: bool = True, metric: str = "f1") -> Path:
    """Tables 1-4 in every format, plots, statistics and costs into ``out``. ``rows_file``: also write the
    rows as ``results.parquet`` (a benchmark writes its own once, at its root). ``metric``: what ``cells``
    hold (``METRICS``; weighted F1 unless asked)."""
    out.mkdir(parents=True, exist_ok=True)
    paper = cells_from_paper() if compare else None
    md, tex, missing, mismatches = [], [], [], []
    for n in tables:
        if not has_results(cells, n):
            missing.append(f"table {n}: no results" + (" (no ablation ran)" if n in AVG_TABLES else ""))
            for stale in (out / f"table{n}.csv", out / f"table{n}.png"):  # from an earlier rendering
                stale.unlink(missing_ok=True)
            continue
        t = build_table(cells, n, paper, metric)
        echo(render(t, "terminal", std, compare) + "\n")
        md.append(render(t, "markdown", std, compare))
        tex.append(latex(t, std, compare))
        wide_frame(t).to_csv(out / f"table{n}.csv")
        plot(t, out / f"table{n}.png", published=rows is None)
        pf = pairs_frame(t) if n in (1, 2) else None
        if pf is not None:  # methods x teacher -> student pairs
            pf.to_csv(out / f"pairs{n}.csv")
            title = f"Table {n} by teacher -> student pair: mean {t.metric} over each data set's modality columns"
            shown = pf.round(2).astype(object).where(pf.notna(), "-")
            md.append(f"{title}\n\n" + shown.to_markdown(tablefmt="github"))
            echo(f"{title}\n" + shown.to_markdown(tablefmt="simple") + "\n")
        gaps = t.missing()
        if gaps:
            missing.append(f"table {n}: {len(gaps)} missing cell(s), e.g. {', '.join(gaps[:3])}")
        mismatches += t.average_mismatches()
    no_paper = paper_gaps(cells, paper)
    seeds = seeds_notes(cells, tables)
    notes = [cells_note(selection, metric), *seeds, *no_paper, *diverged_notes(rows)]
    if mismatches:
        notes.append("Avg as printed in the paper; where it differs from the mean of the printed cells: "
                     + "; ".join(mismatches) + " (the paper presumably averaged unrounded values).")
    (out / "tables.md").write_text("\n\n".join(md + notes) + "\n")
    (out / "tables.tex").write_text("% cmkd-bench tables; LaTeX packages: booktabs\n\n" + "\n\n".join(tex) + "\n")
    cells.to_csv(out / "cells.csv", index=False)
    if rows is not None:
        if rows_file:
            rows.to_parquet(out / "results.parquet", engine="pyarrow", index=False)
        write_statistics(rows, out, tables, selection, echo, metric)
    for m in missing:
        echo(f"missing: {m}")
    for m in mismatches + seeds + no_paper + diverged_notes(rows):
        echo(f"note: {m}")
    return out


def seeds_notes(cells: pd.DataFrame, tables: tuple[int, ...]) -> list[str]:
    """Where a table's cells rest on unequal numbers of seeds (a second stage ran for some): which, and how many."""
    out = []
    for n in tables:
        if not has_results(cells, n):  # a table not written has nothing to note
            continue
        sub = cells[cells.table == n]
        counts = sub.groupby(["dataset", "column", "row"]).seed.nunique()
        if counts.nunique() < 2:
            continue
        usual = int(counts.mode().iloc[0])
        other = [f"{row} @ {dataset_label(d)}/{c} ({k})" for (d, c, row), k in counts.items() if k != usual]
        out.append(f"Table {n}: {usual} seeds a cell, except {'; '.join(other)}; each row is tested against STUDENT "
                   "on the seeds both have (a second stage adds seeds where the first test was undecided: adaptive.json).")
    return out


def diverged_notes(rows: pd.DataFrame | None) -> list[str]:
    """The trials a non-finite loss ended: shown under the tables, never averaged into a cell."""
    if rows is None or "status" not in rows or not (rows.status == "diverged").any():
        return []
    df = rows[rows.status == "diverged"].drop_duplicates("trial_id")
    names = [f"{r.method}{'|' + r.variant if r.variant else ''} {r.dataset} seed {r.seed} ({r.error})"
             for r in df.itertuples()]
    return [f"Diverged, left out of every mean ({len(names)} trial(s)): " + "; ".join(names[:10])
            + (f"; and {len(names) - 10} more" if len(names) > 10 else "") + "."]


def cells_note(selection: str, metric: str = "f1") -> str:
    """What a cell of tables.md shows, under the selection rule and metric in force."""
    chosen = {"best-val": "at each output's best validation epoch (the protocol)", "last": "at the last epoch",
              "oracle": "at the best test epoch (oracle selection: an upper bound, not a result)"}[selection]
    return (f"Cells: mean test {METRICS[metric][1]} over seeds, {chosen}; arrows against STUDENT of the same column; "
            "best distilled result of each column in bold; 'ns': not significant in a paired t-test across seeds "
            f"against STUDENT, Holm-corrected within the column (alpha {ALPHA}); 'untested': no such test was possible "
            "(fewer than two seeds paired with STUDENT); '-': missing. "
            "Per-cell statistics (sample std, n, 95% t interval, p, Holm p"
            + (", selection gaps, accuracy, average per-class accuracy, kappa" if metric == "f1" else "") + "): stats.csv.")


def paper_gaps(cells: pd.DataFrame, paper: pd.DataFrame | None) -> list[str]:
    """With --compare-paper, a note naming the data sets the paper has no numbers for."""
    absent = sorted({d for d in cells.dataset if paper is not None and d not in set(paper.dataset)
                     and d != PRINTED_AVG[0]}, key=dataset_order)
    return [f"'/ -' in {', '.join(dataset_label(d) for d in absent)} columns: the paper reports no numbers for "
            f"{'this data set' if len(absent) == 1 else 'these data sets'} (--compare-paper compares with "
            "SUNRGBD, EuroSat-MS-SAR and TRISTAR only)"] if absent else []


def write_statistics(rows: pd.DataFrame, out: Path, tables: tuple[int, ...], selection: str, echo,
                     metric: str = "f1") -> None:
    """stats.csv/.parquet (per cell) and the cost table (cost.csv, cost.md, echoed)."""
    from tabulate import tabulate

    st = stats_frame(rows, tables, selection, metric)
    st.to_csv(out / "stats.csv", index=False)
    st.to_parquet(out / "stats.parquet", engine="pyarrow", index=False)
    ct = cost_table(rows)
    if ct.empty:
        return
    ct.to_csv(out / "cost.csv", index=False)
    text = tabulate(ct.values.tolist(), headers=list(ct.columns), tablefmt="github", floatfmt=".2f")
    (out / "cost.md").write_text("Cost per trial (seconds; with_teacher_s adds the teacher's trial)\n\n" + text + "\n")
    echo("Cost per trial (wall seconds, teacher included for distilled students)\n"
         + tabulate(ct.values.tolist(), headers=list(ct.columns), tablefmt="simple", floatfmt=".2f") + "\n")


def write_all_tables(bench_folder: str | Path, echo=print) -> Path:
    rows = load_rows(bench_folder)
    return write_report(cells_from_results(rows), Path(bench_folder) / "tables", rows, echo=echo, rows_file=False)
