"""``report.html``: a benchmark folder as one self-contained page a person opens.

Everything the folder's files say, in the order a reader asks it: what ran (commit, machine, config,
counts, time), the paper's tables as filled (mean, 95% interval, marks, the paper's number beside), a
sortable leaderboard per data-set column (F1, interval, Holm p, cost, selection gaps), plots (bars with
intervals, learning curves), each cell's seeds with links to their trial folders and MLflow runs, the
known-answer verdict where the synthetic regimes ran, and what is missing and why.

The page is rendered by Jinja2 from ``templates/report.html.j2``; CSS, the sorting script and the images
(PNG, base64) are inline, so it opens from ``file://`` with no network. Every number is read from the same
frames that ``tables.md`` and ``stats.csv`` are written from (``cells_from_results``, ``build_table``,
``stats_frame``), never recomputed another way.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cmkd.errors import UserError
from cmkd.harness.engine.io import write_text

from .cells import cells_from_paper, cells_from_results, dataset_label, load_rows, rich_modality
from .provenance import RUN_FILE, RunLog, read_run_log
from .record import FINAL
from .tables import Table, build_table, has_results, pairs_frame, row_names

REPORT_FILE = "report.html"
TEMPLATES = Path(__file__).resolve().with_name("templates")
#: where MLflow's UI serves by default (``mlflow ui``): the report links each seed's run there
MLFLOW_UI = "http://127.0.0.1:5000"


@dataclass
class Seed:
    seed: int
    f1: float
    trial_id: str
    folder: str  # a link relative to the report, or "" when the trial's folder is not under it
    mlflow: str  # the run's address in `mlflow ui`, or ""


@dataclass
class CellView:
    mean: float | None
    ci: tuple[float, float] | None = None
    n: int = 0
    arrow: str = ""
    mark: str = ""  # "ns", "untested" or ""
    best: bool = False
    p_holm: float | None = None
    paper: float | None = None
    seeds: list[Seed] = field(default_factory=list)


@dataclass
class TableView:
    number: int
    title: str
    columns: list[str]
    rows: list[tuple[str, list[CellView]]]
    image: str  # data: URI of the bar plot
    pairs: str  # the methods x pairs table as HTML, or ""


@dataclass
class Board:
    """One data-set column's leaderboard: rows are methods."""

    title: str
    anchor: str
    rows: list[dict]


@dataclass
class Missing:
    lines: list[str] = field(default_factory=list)  # what did not run or did not finish, and why
    corrupt: list[str] = field(default_factory=list)  # set-aside files with their reasons


def write_html_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Render ``<folder>/report.html`` (or ``out``) from a benchmark folder; returns its path."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    folder = Path(folder)
    if not (folder / "results").is_dir():
        raise UserError(f"{folder} is not a benchmark folder (no results/); pass what cmkd bench --out wrote")
    page = gather(folder)
    # the folder beside this module: what an editable install maps and a wheel ships (package data); jinja's
    # PackageLoader cannot see it through setuptools' editable finder
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    env.filters["f1"] = lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"
    env.filters["p"] = _fmt_p
    text = env.get_template("report.html.j2").render(**page)
    path = Path(out or folder / REPORT_FILE)
    write_text(text, path)
    return path


def gather(folder: Path) -> dict:
    """Everything the template shows, read from the folder."""
    from .store import ResultsStore

    log = read_run_log(folder)
    records = {r.trial_id: r for r in ResultsStore(folder / "results").records()}
    missing = Missing(corrupt=corrupt_files(folder))  # after reading: a damaged record has just been set aside
    try:
        rows = load_rows(folder)
    except UserError as exc:  # no readable record at all: the page still says what is missing
        rows, missing.lines = None, [str(exc)]
    tables, boards, curves, verdict = [], [], "", None
    if rows is not None:
        cells = cells_from_results(rows)
        links = _seed_links(folder, records, log)
        paper = cells_from_paper()
        tables = [table_view(build_table(cells, n, paper), cells, links, missing)
                  for n in (1, 2, 3, 4) if has_results(cells, n)]
        boards = leaderboards(rows, cells)
        curves = learning_curves(ResultsStore(folder / "results").history(), cells)
        verdict = _verdict(rows)
    missing.lines += not_finished(log, records)
    return {"header": header(folder, log, records), "tables": tables, "boards": boards, "curves": curves,
            "verdict": verdict, "missing": missing, "config": _config_text(folder)}


def header(folder: Path, log: RunLog | None, records: dict) -> dict:
    """The run's provenance (the last invocation's, with the total time of all of them)."""
    counts = {s: sum(r.status == s for r in records.values()) for s in ("finished", "failed", "skipped", "diverged")}
    out = {"folder": str(folder.resolve()), "name": folder.name, "counts": counts,
           "planned": len(log.plan) if log else None, "sessions": len(log.sessions) if log else 0}
    bench = _bench(folder)
    out.update(profile=bench.get("name", "?"), config_hash=bench.get("config_hash", "?"))
    if log and log.sessions:
        last = log.sessions[-1]
        out.update(commit=last.commit or "not a git checkout", dirty=last.dirty, date=last.ended,
                   started=log.sessions[0].started, machine=last.machine.line(),
                   wall_min=sum(s.wall_s for s in log.sessions) / 60, interrupted=last.interrupted,
                   mlflow=f"mlflow ui --backend-store-uri {last.tracking_uri}" if last.tracking_uri.startswith("sqlite")
                   else last.tracking_uri, experiment=last.experiment)
    else:
        threads = sorted({r.threads for r in records.values() if r.threads})
        out.update(commit="not recorded", dirty=None, date="not recorded", started="not recorded",
                   machine=f"not recorded ({RUN_FILE} missing); trials ran on host(s) "
                           f"{', '.join(sorted({r.host for r in records.values() if r.host})) or '?'} with "
                           f"{', '.join(map(str, threads)) or '?'} thread(s)", wall_min=None, interrupted=None,
                   mlflow="", experiment="")
    return out


def table_view(table: Table, cells: pd.DataFrame, links: dict[str, tuple[str, str]], missing: Missing) -> TableView:
    from .plots import plot

    names = row_names(table)
    rows = []
    for (key, _, _), name in zip(table.rows, names):
        views = []
        for col in table.columns:
            c = table.cells[(key, col)]
            seeds = cells[(cells.table == table.number) & (cells.row == key) & (cells.dataset == col[0])
                          & (cells.column == col[1])].sort_values("seed")
            views.append(CellView(
                c.mean, c.ci, c.n, c.arrow, "ns" if c.significant is False else
                ("untested" if c.arrow and c.significant is None else ""), c.best, c.p_holm, c.paper,
                [Seed(int(s.seed), float(s.f1), s.trial_id, *links.get(s.trial_id, ("", ""))) for s in seeds.itertuples()]))
        if any(v.mean is not None for v in views):
            rows.append((name, views))
    gaps = [f"{name} @ {col}" for name, views in rows for col, v in zip(_columns(table), views) if v.mean is None]
    if gaps:  # rows the config never planned are not shown, so not missing; an empty cell of a shown row is
        missing.lines.append(f"Table {table.number}: {len(gaps)} empty cell(s) in rows that ran elsewhere: "
                             f"{', '.join(gaps[:8])}" + (" ..." if len(gaps) > 8 else ""))
    buf = io.BytesIO()
    image = _data_uri(buf.getvalue(), "image/png") if plot(table, buf) is not None else ""
    pf = pairs_frame(table) if table.number in (1, 2) else None
    pairs = "" if pf is None else pf.round(2).astype(object).where(pf.notna(), "-").to_html(classes="grid", border=0)
    return TableView(table.number, table.title(), _columns(table), rows, image, pairs)


def _columns(table: Table) -> list[str]:
    return [f"{dataset_label(d)} {(rich_modality(d) or '?').upper()}→{m.upper()}" if table.number == 1
            else f"{dataset_label(d)} {m.upper()}" for d, m in table.columns]


def leaderboards(rows: pd.DataFrame, cells: pd.DataFrame) -> list[Board]:
    """Per Table 1-2 data-set column: the methods with F1, interval, Holm p, cost and selection gaps."""
    from .report import stats_frame

    st = stats_frame(rows, tables=(1, 2))
    if st.empty:
        return []
    done = rows[rows.status == "finished"]
    per_output = done.set_index(["trial_id", "modality"])
    wall = done.drop_duplicates("trial_id").set_index("trial_id").wall_time_s
    boards = []
    for (n, d, c), sub in st.groupby(["table", "dataset", "column"], sort=False):
        out = []
        for r in sub.itertuples():
            ids = cells[(cells.table == n) & (cells.dataset == d) & (cells.column == c) & (cells.row == r.row)].trial_id
            cost = [per_output.loc[(t, c)] for t in ids if (t, c) in per_output.index]
            mean = (lambda col: float(pd.Series([x[col] for x in cost], dtype=float).mean()) if cost else float("nan"))
            out.append({"method": r.label, "mean": r.mean, "low": r.ci95_low, "high": r.ci95_high, "n": r.n,
                        "p_holm": r.p_holm, "significant": r.significant, "params_M": mean("params") / 1e6,
                        "MFLOPs": mean("flops") / 1e6, "train_s": float(wall.reindex(ids).mean()) if len(ids) else float("nan"),
                        "gap_last": getattr(r, "gap_last", float("nan")), "gap_oracle": getattr(r, "gap_oracle", float("nan"))})
        title = f"Table {n}: {dataset_label(d)}, {c.upper()} column"
        boards.append(Board(title, f"board-{n}-{len(boards)}", sorted(out, key=lambda x: -x["mean"])))
    return boards


def learning_curves(history: pd.DataFrame, cells: pd.DataFrame) -> str:
    """Validation F1 per epoch, mean over seeds, per row of Tables 1-2 (one panel per column): a data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if history.empty or cells.empty:
        return ""
    keyed = cells[cells.table.isin([1, 2]) & (cells.row != "TEACHER")][["table", "dataset", "column", "row", "trial_id"]]
    h = history[["trial_id", "output", "epoch", "val_f1"]].merge(keyed, left_on=["trial_id", "output"], right_on=["trial_id", "column"])
    if h.empty:
        return ""
    panels = list(h.groupby(["table", "dataset", "column"], sort=True))
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    for ax, ((n, d, c), sub) in zip(axes.flat, panels):
        for row, lines in sub.groupby("row", sort=False):
            curve = lines.groupby("epoch").val_f1.mean() * 100
            ax.plot(curve.index, curve.values, marker="o", ms=2.5, lw=1.2, label=row.replace("|", " "))
        ax.set_title(f"Table {n}: {dataset_label(d)} {c.upper()}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("validation weighted F1 (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return _data_uri(buf.getvalue(), "image/png")


def not_finished(log: RunLog | None, records: dict) -> list[str]:
    """Planned trials with no final record (never ran, or cut off), and failed or skipped ones with their error."""
    out = []
    if log is not None:
        absent = [p for p in log.plan if p.trial_id not in records]
        if absent:
            out.append(f"{len(absent)} planned trial(s) never ran or did not finish"
                       + (" (the run was interrupted)" if log.sessions and log.sessions[-1].interrupted else "")
                       + ": " + ", ".join(p.name for p in absent[:12]) + (" ..." if len(absent) > 12 else ""))
    for r in sorted(records.values(), key=lambda r: r.name):
        if r.status not in FINAL or r.status == "diverged":
            line = (r.error or "").strip().splitlines()
            out.append(f"{r.status}: {r.name or r.trial_id}: {line[-1][:300] if line else 'no error recorded'}")
    return out


def corrupt_files(folder: Path) -> list[str]:
    """Files set aside as damaged anywhere in the folder (``.corrupt/``), each with its reason."""
    out = []
    for path in sorted(folder.rglob(".corrupt/*")):
        if path.suffix == ".reason" or not path.is_file():
            continue
        why = path.with_name(path.name + ".reason")
        text = why.read_text().strip() if why.is_file() else "no reason recorded"
        out.append(f"{path.relative_to(folder)}: {text}")
    return out


def _seed_links(folder: Path, records: dict, log: RunLog | None) -> dict[str, tuple[str, str]]:
    exp_id = log.sessions[-1].experiment_id if log and log.sessions else ""
    out = {}
    for tid, r in records.items():
        link = ""
        if r.out_dir:
            try:
                link = Path(os.path.relpath(r.out_dir, folder.resolve())).as_posix()
                link = "" if link.startswith("..") else link
            except ValueError:
                link = ""
        run = f"{MLFLOW_UI}/#/experiments/{exp_id}/runs/{r.mlflow_run_id}" if exp_id and r.mlflow_run_id else ""
        out[tid] = (link, run)
    return out


def _verdict(rows: pd.DataFrame) -> dict | None:
    from .controls import holds_both_regimes, verdict

    if not holds_both_regimes(rows):
        return None
    ok, lines = verdict(rows)
    return {"ok": ok, "lines": lines}


def _bench(folder: Path) -> dict:
    from cmkd.harness.engine.corrupt import PARSE_ERRORS, read_json_file

    try:
        return read_json_file(folder / "bench.json")
    except (*PARSE_ERRORS, FileNotFoundError):
        return {}


def _config_text(folder: Path) -> str:
    config = _bench(folder).get("config")
    return json.dumps(config, indent=2, sort_keys=True, default=str) if config else "bench.json missing or unreadable"


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _fmt_p(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.2g}" if v < 0.001 else f"{v:.3f}"
