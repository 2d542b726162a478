"""Table cells in long form: one row per (table, data-set entry, column, row key, seed) with the F1 in
percent, from a benchmark's results rows, an MLflow experiment's runs, or the paper's own numbers.

Row keys: ``TEACHER`` and ``STUDENT`` (the reference methods' trials), ``<method>|<variant>`` for a
distilled method, ``<method>`` for a standalone method, ``<method>:<ablation>`` for an ablation.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from cmkd.archs import DEFAULT_ARCH
from cmkd.errors import UserError, nearest
from cmkd.harness.engine.spec import data_key
from cmkd.methods import FUSED

from .record import SCORE_COLUMNS, SELECTIONS

TITLES = {1: "Table 1: cross-modal scenario (teacher on the rich modality), weighted F1 (%)",
          2: "Table 2: multi-modal scenario (two-branch teacher), weighted F1 (%)",
          3: "Table 3: DisCoM-KD loss ablation, weighted F1 (%)",
          4: "Table 4: DisCoM-KD representation ablation, weighted F1 (%)"}
#: what a table's cells can show (``--metric``): name -> (results column, label); each x100 in the cells
METRICS = {"f1": ("test_f1", "weighted F1 (%)"), "accuracy": ("test_accuracy", "accuracy (%)"),
           "avg-accuracy": ("test_avg_accuracy", "average per-class accuracy (%)"),
           "kappa": ("test_kappa", "Cohen's kappa (x100)")}
#: the row keys of the reference rows (every other row key is a method's: ``m|variant``, ``m``, ``m:ablation``)
TEACHER, STUDENT = "TEACHER", "STUDENT"
#: (dataset, column) of a printed average in the paper's numbers (``dataset=all, modality=avg``)
PRINTED_AVG = ("all", "avg")
#: tables with an Avg column (the paper prints one for Tables 3 and 4)
AVG_TABLES = (3, 4)


#: the paper's teacher -> student pair (a benchmark of it alone shows no pair in its column keys)
DEFAULT_PAIR = f"{DEFAULT_ARCH}->{DEFAULT_ARCH}"


def pair_key(data: str, pair: str) -> str:
    """A column group's key for one teacher -> student pair: ``data [teacher->student]``."""
    return f"{data} [{pair}]"


def split_key(key: str) -> tuple[str, str]:
    """``data [pair]`` -> (data, pair); a key without a pair -> (key, "")."""
    data, _, pair = key.partition(" [")
    return data, pair.removesuffix("]")


def _registered(key: str):
    from cmkd.datasets import DATASETS

    return DATASETS.get(split_key(key)[0].split(":", 1)[0])


def rich_modality(dataset: str) -> str | None:
    cls = _registered(dataset)
    return cls.rich if cls is not None and cls.rich else None


def dataset_label(dataset: str) -> str:
    cls = _registered(dataset)
    data, pair = split_key(dataset)
    name, _, entry = data.partition(":")
    label = (cls.label if cls is not None else "") or name
    return (f"{label} ({entry})" if entry else label) + (f" [{pair}]" if pair else "")


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


def cells_from_results(rows: pd.DataFrame, selection: str = "best-val", metric: str = "f1") -> pd.DataFrame:
    """Results rows (one per trial output) -> table cells: table, dataset, column, row, seed, f1 (%), trial_id.

    ``selection`` picks the test F1 of each output: at the best validation epoch (the protocol), at the
    last epoch, or the oracle (best test epoch). ``metric`` puts another score of the best validation epoch
    in the ``f1`` column instead (:data:`METRICS`: accuracy, average per-class accuracy, Cohen's kappa; all
    x100). Row keys: ``TEACHER`` and ``STUDENT`` (the reference methods' trials), ``<method>|<variant>`` for
    a distilled method, ``<method>`` for a standalone method, ``<method>:<ablation>`` for an ablation.
    ``dataset`` is the column group's key (``data_key``)."""
    if selection not in SELECTIONS:
        raise UserError(f"unknown selection {selection!r}{nearest(selection, list(SELECTIONS))}; valid: "
                        f"{', '.join(SELECTIONS)}")
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}{nearest(metric, list(METRICS))}; valid: {', '.join(METRICS)}")
    if metric != "f1" and selection != "best-val":
        raise UserError(f"--metric {metric} is recorded at each output's best validation epoch only; "
                        "use --selection best-val with it (last and oracle selections are of test F1)")
    df = rows[rows.status == "finished"].copy()
    if df.empty:
        return pd.DataFrame(columns=["table", "dataset", "column", "row", "seed", "f1", "trial_id"])
    column = SELECTIONS[selection] if metric == "f1" else METRICS[metric][0]
    if metric != "f1" and (column not in df or df[column].isna().any()):
        raise UserError(f"--metric {metric}: {int(df[column].isna().sum()) if column in df else len(df)} result(s) "
                        f"have no {METRICS[metric][1].split(' (')[0]} (trials run before cmkd-bench recorded it, or "
                        "undefined for them); use --metric f1, or rerun those trials")
    if column not in df or df[column].isna().any():
        raise UserError(f"--selection {selection}: {int(df[column].isna().sum()) if column in df else len(df)} "
                        "result(s) have no last-epoch or oracle test F1 (trials run before cmkd-bench recorded the "
                        "test F1 of every epoch); use --selection best-val, or rerun those trials"
                        if selection != "best-val" else
                        f"{int(df[column].isna().sum()) if column in df else len(df)} finished result(s) have no test F1: "
                        "their records are incomplete; rerun those trials")
    df["test_f1"] = df[column]
    if "entry" not in df:
        df["entry"] = ""
    df["data"] = [data_key(d, e) for d, e in zip(df.dataset, df.entry)]
    for col in ("arch", "teacher_arch"):  # rows from before architectures were chosen: the paper's network
        df[col] = df[col].fillna(DEFAULT_ARCH) if col in df else DEFAULT_ARCH
    df["pairs"] = df["pairs"].fillna("") if "pairs" in df else ""
    shown = {p for text in df.pairs for p in text.split(";") if p} - {DEFAULT_PAIR}
    out = []
    for ds, sub in df.groupby("data"):
        rich = rich_modality(ds)
        mods = sorted(set(sub.modality) - {FUSED, None}, key=lambda m: (m != rich, m))
        if rich is None and mods:
            rich = mods[0]
        own = entry_network(sub)
        for r in sub.itertuples():
            for pair in (r.pairs.split(";") if r.pairs else [DEFAULT_PAIR]):
                base = {"dataset": pair_key(ds, pair) if shown else ds, "seed": int(r.seed), "f1": 100 * float(r.test_f1),
                        "trial_id": getattr(r, "trial_id", "")}
                placed = f"{own}->{own}" if pair == DEFAULT_PAIR else pair
                out += [{**base, **place} for place in _places(r, rich, mods, placed)]
    return pd.DataFrame(out)


def entry_network(rows: pd.DataFrame) -> str:
    """The network of one data-set entry's default-pair trials: resnet18, or the entry's own ``arch`` (a data set
    benchmarked with its papers' backbone, e.g. LeNet-5 on AV-MNIST), which every one of those trials then has."""
    default = rows[[DEFAULT_PAIR in (p.split(";") if p else [DEFAULT_PAIR]) for p in rows.pairs]]
    archs = set(default.arch) | set(default.teacher_arch[default.scenario.isin(["cross-modal", "multi-modal"])])
    return archs.pop() if len(archs) == 1 else DEFAULT_ARCH


def _places(r, rich: str, mods: list[str], pair: str = DEFAULT_PAIR) -> list[dict]:
    """Where one result row lands for one teacher -> student pair: (table, column, row key) for each cell it
    fills. A reference trial is the pair's STUDENT row when it has the pair's student network, its TEACHER
    when it has the teacher's (both, for resnet18 -> resnet18)."""
    teacher, _, student = pair.partition("->")
    poor = [m for m in mods if m != rich]
    if r.method == _reference("cross-modal"):  # STUDENT of its modality; on the rich one also the TEACHER
        out = []
        if r.arch == student:
            out += [{"table": 1, "column": r.modality, "row": STUDENT}] if r.modality != rich else []
            out += [{"table": 2, "column": r.modality, "row": STUDENT}]
        if r.arch == teacher and r.modality == rich:
            out += [{"table": 1, "column": m, "row": TEACHER} for m in poor]
        return out
    if r.method == _reference("multi-modal"):
        return [{"table": 2, "column": m, "row": TEACHER} for m in mods] if r.arch == teacher else []
    if r.scenario in ("cross-modal", "multi-modal"):
        if (r.teacher_arch, r.arch) != (teacher, student):
            return []
        return [{"table": 1 if r.scenario == "cross-modal" else 2, "column": r.modality, "row": f"{r.method}|{r.variant}"}]
    if r.arch != student:
        return []
    if r.scenario == "ablation":
        return [{"table": ablation_table(r.method, r.variant), "column": r.modality, "row": f"{r.method}:{r.variant}"}]
    if _blank(r.variant):  # a standalone method's full run: Tables 1 and 2, and its ablation tables
        tables = ([1] if r.modality != rich else []) + [2] + full_row_tables(r.method)
        return [{"table": t, "column": r.modality, "row": r.method} for t in tables]
    return []


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
        out += [{"table": int(r.table), "dataset": r.dataset, "column": c, "row": row, "seed": 0, "f1": float(r.f1),
                 "published": True} for c in cols]
    return pd.DataFrame(out)


def load_rows(folder: str | Path) -> pd.DataFrame:
    from .store import ResultsStore

    folder = Path(folder)
    if not (folder / "results").is_dir() or not list((folder / "results").glob("*.json")):
        raise UserError(f"{folder} holds no results (no results/*.json); run cmkd bench --out {folder} first")
    bench = folder / "bench.json"
    if bench.is_file():  # methods registered by the benchmark's plugins label their rows
        from cmkd.harness.engine.corrupt import PARSE_ERRORS, read_json_file, warn
        from cmkd.plugins import load_plugins

        try:
            plugins = tuple(read_json_file(bench).get("config", {}).get("plugins", ()))
        except PARSE_ERRORS as exc:
            warn(f"{bench} does not parse ({type(exc).__name__}); the tables are built without its plugins' labels")
            plugins = ()
        load_plugins(plugins)
    rows = ResultsStore(folder / "results").rows()
    hashes = set(rows.config_hash.dropna())
    if len(hashes) > 1:
        raise UserError(f"{folder} mixes results of {len(hashes)} benchmark configs ({', '.join(sorted(hashes))}); "
                        "build tables from one benchmark folder each")
    return rows


def rows_from_mlflow(uri: str, experiment: str) -> pd.DataFrame:
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
                            "arch": _tag(r, "arch", DEFAULT_ARCH), "teacher_arch": _tag(r, "teacher_arch", DEFAULT_ARCH),
                            "pairs": _tag(r, "pairs", ""),
                            "test_f1": float(r[col]), "test_f1_last": r.get(f"metrics.last_test_f1/{key}", np.nan),
                            "test_f1_oracle": r.get(f"metrics.oracle_test_f1/{key}", np.nan),
                            **{c: r.get(f"metrics.{c}/{key}", np.nan) for c in SCORE_COLUMNS},
                            "status": "diverged" if _tag(r, "diverged", "") else "finished",
                            "error": _tag(r, "diverged", ""), "trial_id": r["tags.trial_id"],
                            "teacher_id": r.get("tags.teacher_id", ""), "wall_time_s": r.get("metrics.wall_time_s", 0.0),
                            "images_per_s": np.nan, "config_hash": r.get("tags.config_hash")})
    return pd.DataFrame(out)


def _tag(run, name: str, default: str) -> str:
    """A run's tag, or ``default`` where the run predates it (pandas gives NaN for a missing tag)."""
    value = run.get(f"tags.{name}")
    return value if isinstance(value, str) and value else default


def finished_runs(uri: str, experiment: str):
    """Runs of an experiment as a DataFrame (latest FINISHED per trial)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise UserError(f"MLflow experiment {experiment!r} does not exist at {uri}")
    df = mlflow.search_runs(experiment_ids=[exp.experiment_id], filter_string="attributes.status = 'FINISHED'",
                            order_by=["attributes.start_time DESC"])
    return df.drop_duplicates("tags.trial_id") if len(df) else df
