"""Tables: the paper's numbers round-trip; a hand-made results set renders exactly in every format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_rel

from cmkd.errors import UserError
from cmkd.harness.cli.main import main
from cmkd.results import paper_tables_path
from cmkd.results.cells import cells_from_paper, cells_from_results, load_rows
from cmkd.results.render import latex, render
from cmkd.results.report import write_report
from cmkd.results.tables import DOWN, UP, build_table


def test_paper_tables_1_and_2_round_trip_with_arrows():
    paper = pd.read_csv(paper_tables_path(), keep_default_na=False)
    cells = cells_from_paper()
    for number in (1, 2):
        t = build_table(cells, number)
        sub = paper[paper.table == number]
        for r in sub.itertuples():
            row = (r.method.upper() if r.method in ("teacher", "student") else r.method if r.method == "discomkd"
                   else f"{r.method}|{'lskd' if r.variant == 'lskd' else 'orig'}")
            cols = [c for c in t.columns if c[0] == r.dataset and (r.modality == "all" or c[1] == r.modality)]
            assert cols, (number, r)
            for col in cols:
                cell = t.cells[(row, col)]
                assert f"{cell.mean:.2f}" == f"{r.f1:.2f}"
                if row not in ("TEACHER", "STUDENT"):
                    student = sub[(sub.method == "student") & (sub.dataset == r.dataset) & (sub.modality == col[1])].f1.iloc[0]
                    assert cell.arrow == (UP if r.f1 > student else DOWN)
    t1 = render(build_table(cells, 1))
    lines = {line.split()[0] + " " + line.split()[1] if line.split()[0] in ("KDv1", "MLKD") else line.split()[0]: line
             for line in t1.splitlines()[4:] if line.strip()}
    assert "40.10 ↓" in lines["KDv1 ORIG"] and "78.38 ↑" in lines["KDv1 ORIG"] and "92.71 ↑" in lines["KDv1 ORIG"]
    assert "44.43 ↑" in lines["MLKD ORIG"] and "47.63 ↓" in lines["MLKD ORIG"] and "93.06 ↑ *" in lines["MLKD ORIG"]
    assert "47.69 ↑ *" in lines["DisCoM-KD"] and "80.03 ↑ *" in lines["DisCoM-KD"]
    assert "SUNRGBD RGB->DEPTH" in t1 and "TRISTAR THERMAL->DEPTH" in t1


def _rows() -> pd.DataFrame:
    """Two seeds on a two-modality data set; dkd lskd missing; known means and stds."""
    rows = []

    def add(method, modality, f1s, scenario="single", variant="", tid=None):
        for seed, f1 in enumerate(f1s):
            rows.append({"dataset": "synthetic", "scenario": scenario, "method": method, "variant": variant,
                         "modality": modality, "seed": seed, "test_f1": f1, "val_f1": f1, "best_epoch": 1,
                         "epochs_run": 1, "wall_time_s": 10.0, "images_per_s": 100.0, "device": "cpu",
                         "config_hash": "abc", "code_version": "0", "trial_id": f"{tid or method + modality + variant + scenario}-{seed}",
                         "stage": 1, "status": "finished", "teacher_id": None, "mlflow_run_id": None, "error": None})

    add("student", "rgb", [0.80, 0.90])
    add("student", "depth", [0.50, 0.60])
    add("teacher-mm", "all", [0.95, 0.97])
    add("kdv1", "depth", [0.60, 0.66], "cross-modal", "orig")
    add("kdv1", "depth", [0.40, 0.50], "cross-modal", "lskd")
    add("dkd", "depth", [0.52, 0.62], "cross-modal", "orig")
    add("kdv2", "rgb", [0.81, 0.95], "multi-modal", "orig")
    add("discomkd", "rgb", [0.85, 0.91])
    add("discomkd", "depth", [0.70, 0.72])
    add("discomkd", "rgb", [0.70, 0.80], "ablation", "no-adv")
    add("discomkd", "depth", [0.60, 0.64], "ablation", "no-adv")
    return pd.DataFrame(rows)


def test_hand_made_results_render_exactly():
    cells = cells_from_results(_rows())
    t1 = build_table(cells, 1)
    assert t1.columns == [("synthetic", "depth")]
    col = ("synthetic", "depth")
    c = t1.cells[("TEACHER", col)]
    assert (c.mean, c.n) == (85.0, 2) and c.std == pytest.approx(5.0)
    assert t1.cells[("STUDENT", col)].mean == 55.0
    assert t1.cells[("kdv1|orig", col)].mean == 63.0 and t1.cells[("kdv1|orig", col)].arrow == UP
    assert t1.cells[("kdv1|lskd", col)].arrow == DOWN
    assert t1.cells[("dkd|lskd", col)].mean is None  # missing, not zero
    assert t1.cells[("discomkd", col)].best and not t1.cells[("kdv1|orig", col)].best
    text = render(t1, "terminal", std=True)
    assert "85.00 ± 5.00 (n=2)" in text and "71.00 ± 1.00 (n=2) ↑ ns *" in text
    lines = text.splitlines()
    dkd_lskd = lines[next(i for i, line in enumerate(lines) if line.startswith("DKD")) + 1]
    assert dkd_lskd.split() == ["w/", "LSKD", "-"]  # the missing cell, not a zero
    md = render(t1, "markdown")
    assert "**71.00 ↑ ns**" in md and "| TEACHER" in md
    tex = latex(t1)
    lines = tex.splitlines()
    # a table environment with a caption, the data set spanning its columns, booktabs rules
    assert lines[:2] == [r"\begin{table}[t]", r"\centering"] and lines[2].startswith(r"\caption{cross-modal scenario")
    assert lines[-3:] == [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    start = lines.index(r"\begin{tabular}{llr}")
    assert lines[start + 1] == r"\toprule"
    assert lines[start + 2] == r"\multicolumn{2}{l}{Method} & \multicolumn{1}{c}{Synthetic} \\"
    assert lines[start + 3] == r"\cmidrule(lr){3-3}" and lines[start + 4] == r" &  & RGB$\rightarrow$DEPTH \\"
    body_rows = [line for line in lines[start + 4:] if line.endswith(r"\\")]  # the second header row on
    assert len(body_rows) > 3 and all(line.count("&") == 2 for line in body_rows)
    assert r"\textbf{71.00 $\uparrow$$^{\mathrm{ns}}$}" in tex and r"$\rightarrow$" in tex
    t2 = build_table(cells, 2)
    assert t2.cells[("TEACHER", ("synthetic", "rgb"))].mean == 96.0
    assert t2.cells[("kdv2|orig", ("synthetic", "rgb"))].mean == 88.0
    t3 = build_table(cells, 3)
    assert t3.cells[("discomkd:no-adv", ("synthetic", "rgb"))].mean == 75.0
    assert t3.average["discomkd:no-adv"] == pytest.approx(np.mean([75.0, 62.0]))
    assert "Avg" in render(t3)


def test_one_seed_cells_are_marked_untested_not_significant():
    """With one seed no paired test is possible: the arrow and the bold stay, and the cell says 'untested'
    (before: no mark at all, so it read as significant). The paper's published means are not marked."""
    rows = _rows()
    one = rows[rows.seed == rows.seed.min()]
    t1 = build_table(cells_from_results(one), 1)
    cell = t1.cells[("kdv1|orig", ("synthetic", "depth"))]
    assert cell.n == 1 and cell.arrow and cell.significant is None
    text = render(t1, "terminal")
    assert "60.00 ↑ untested" in text and " ns" not in text
    assert r"$^{\mathrm{untested}}$" in latex(t1)
    assert "untested" not in render(build_table(cells_from_results(rows), 1), "terminal")  # two seeds: tested
    assert "untested" not in render(build_table(cells_from_paper(), 1), "terminal")  # published means


def test_significance_marks_match_scipy():
    rows = _rows()
    cells = cells_from_results(rows)
    t1 = build_table(cells, 1)
    col = ("synthetic", "depth")
    tested = [k for k, _, _ in t1.rows if k not in ("TEACHER", "STUDENT") and t1.cells[(k, col)].p_value is not None]
    assert {"kdv1|orig", "kdv1|lskd"} <= set(tested)
    for key, method, variant in (("kdv1|orig", "kdv1", "orig"), ("kdv1|lskd", "kdv1", "lskd")):
        a = rows[(rows.method == method) & (rows.variant == variant)].sort_values("seed").test_f1 * 100
        b = rows[(rows.method == "student") & (rows.modality == "depth")].sort_values("seed").test_f1 * 100
        p = ttest_rel(a.values, b.values).pvalue
        cell = t1.cells[(key, col)]
        if np.isnan(p):  # constant differences: the harness calls a non-zero constant shift significant (p = 0)
            assert cell.p_value == 0.0
        else:
            assert cell.p_value == pytest.approx(p)
    # 'ns' marks use the Holm-corrected p within the column (the family: every row tested there)
    ps = sorted(t1.cells[(k, col)].p_value for k in tested)
    m = len(ps)
    adjusted = np.maximum.accumulate([min(1.0, (m - i) * p) for i, p in enumerate(ps)])
    for k in tested:
        c = t1.cells[(k, col)]
        assert c.p_holm == pytest.approx(adjusted[ps.index(c.p_value)])
        assert c.significant == (c.p_holm < 0.05)


def test_every_format_is_written(tmp_path):
    rows = _rows()
    out = write_report(cells_from_results(rows), tmp_path / "t", rows, echo=lambda s: None)
    for name in ("tables.md", "tables.tex", "table1.csv", "table2.csv", "table3.csv", "cells.csv",
                 "results.parquet", "cost.csv", "cost.md", "stats.csv", "stats.parquet"):
        assert (out / name).stat().st_size > 0, name
    for n in (1, 2, 3):
        png = (out / f"table{n}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    # no Table 4 ablation ran: the full DisCoM-KD row alone (already in Tables 1-2) makes no table
    assert not (out / "table4.csv").exists() and not (out / "table4.png").exists()
    assert "Table 4" not in (out / "tables.md").read_text()
    back = pd.read_parquet(out / "results.parquet")
    assert len(back) == len(rows) and set(back.method) == set(rows.method)
    wide = pd.read_csv(out / "table1.csv", index_col=0)
    assert wide.loc["TEACHER", "synthetic/depth"] == 85.0 and np.isnan(wide.loc["DKD w/ LSKD", "synthetic/depth"])
    cost = pd.read_csv(out / "cost.csv")
    assert set(cost.columns) >= {"own_s", "with_teacher_s", "images_per_s"}


def test_compare_paper_cells():
    cells = cells_from_paper()
    paper = cells_from_paper()
    t = build_table(cells, 1, paper)
    text = render(t, "terminal", compare=True)
    assert "40.10 / 40.10 (+0.00) ↓" in text


def test_bad_sources(tmp_path, capsys):
    assert main(["tables", "--from", str(tmp_path)]) == 2
    assert "holds no results" in capsys.readouterr().err
    from cmkd.results.store import ResultRecord, ResultsStore

    store = ResultsStore(tmp_path / "results")
    for i, h in enumerate(("aaa", "bbb")):
        store.put(ResultRecord.from_dict({"trial_id": f"t{i}", "status": "finished", "config_hash": h, "dataset": "synthetic",
                   "scenario": "single", "method": "student", "variant": "", "seed": 0, "modality": "rgb",
                   "outputs": {"rgb": {"test_f1": 0.5, "val_f1": 0.5, "best_epoch": 1}}}))
    with pytest.raises(UserError, match="mixes results of 2 benchmark configs"):
        load_rows(tmp_path)
    db = tmp_path / "m.db"
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{db}").search_experiments()
    assert main(["tables", "--experiment", "nope", "--tracking-uri", f"sqlite:///{db}"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_paper_cli(tmp_path, capsys):
    assert main(["tables", "--paper", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Table 3" in out and "w/o L_adv" in out and (tmp_path / "tables.tex").exists()
    # plots at paper scale stay page-sized: one panel per data set, so the width follows the data sets, not
    # rows x columns (Table 2 was 5616 px wide); 150 dpi, at most ~8.6 x 8 in
    from PIL import Image

    for n in (1, 2, 3, 4):
        w, h = Image.open(tmp_path / f"table{n}.png").size
        assert w <= 1300 and h <= 1200, (n, w, h)


def test_compare_paper_explains_columns_the_paper_has_not(tmp_path):
    rows = _rows()
    lines: list[str] = []
    write_report(cells_from_results(rows), tmp_path / "t", rows, compare=True, echo=lines.append)
    note = next(line for line in lines if line.startswith("note: "))
    assert "the paper reports no numbers for this data set" in note and "Synthetic" in note
    assert note.split("note: ", 1)[1] in (tmp_path / "t" / "tables.md").read_text()


# Tables 3 and 4 as printed in the paper (rows in the paper's order, Avg last)
PAPER_T3 = {
    "no-adv": [51.38, 46.83, 98.10, 80.63, 96.86, 92.93, 77.78],
    "no-mod": [53.73, 46.86, 98.11, 80.44, 96.93, 92.79, 78.14],
    "no-aux": [53.91, 41.38, 97.82, 79.10, 96.68, 91.56, 76.74],
    "no-orth": [49.44, 42.97, 98.03, 79.79, 97.06, 92.62, 76.65],
    "discomkd": [53.63, 47.69, 98.12, 80.03, 97.06, 92.86, 78.23],
}
PAPER_T4 = {
    "only-inv": [46.13, 39.92, 97.73, 76.21, 96.55, 90.79, 74.56],
    "only-inf": [50.82, 43.29, 97.60, 78.09, 96.20, 90.68, 76.11],
    "discomkd": [53.63, 47.69, 98.12, 80.03, 97.06, 92.86, 78.23],
}


@pytest.mark.parametrize("number, expected", [(3, PAPER_T3), (4, PAPER_T4)])
def test_paper_tables_3_and_4_cell_by_cell_with_the_printed_avg(number, expected):
    from cmkd.results.render import body

    t = build_table(cells_from_paper(), number)
    assert t.columns == [("sunrgbd", "rgb"), ("sunrgbd", "depth"), ("eurosat-ms-sar", "ms"), ("eurosat-ms-sar", "sar"),
                         ("tristar", "thermal"), ("tristar", "depth")]
    assert [k for k, _, _ in t.rows] == [k if k == "discomkd" else f"discomkd:{k}" for k in expected]
    for (key, _, _), row in zip(t.rows, body(t, "plain")):
        shown = [cell.split()[0] for cell in row[2:]]
        assert shown == [f"{v:.2f}" for v in expected[key.split(":")[-1]]], key
    # the full method is a row (no '-'), and a tie (TRISTAR thermal 97.06 in Table 3) marks both rows
    if number == 3:
        assert t.cells[("discomkd:no-orth", ("tristar", "thermal"))].best and t.cells[("discomkd", ("tristar", "thermal"))].best
        assert t.cells[("discomkd", ("sunrgbd", "depth"))].best and not t.cells[("discomkd:no-aux", ("sunrgbd", "depth"))].best


def test_printed_avg_is_checked_against_the_cells():
    t3, t4 = build_table(cells_from_paper(), 3), build_table(cells_from_paper(), 4)
    for t, expected in ((t3, PAPER_T3), (t4, PAPER_T4)):
        for key, values in expected.items():
            assert t.average[key if key == "discomkd" else f"discomkd:{key}"] == pytest.approx(np.mean(values[:6]))
    # one printed Avg differs from the mean of the printed cells (77.7883 rounds to 77.79)
    assert len(t3.average_mismatches()) == 1 and "w/o L_adv: printed Avg 77.78" in t3.average_mismatches()[0]
    assert t4.average_mismatches() == []  # 74.555 is printed 74.56


def test_a_cell_of_identical_seeds_plots_its_zero_width_interval(tmp_path):
    """Seeds that all score one F1 (a collapsed model: 100/21 % each) give a zero-width interval that float
    rounding puts a hair off the mean; the figure draws it (a negative whisker used to abort the report)."""
    from cmkd.results.plots import plot

    rows = _rows()
    rows = pd.concat([rows, rows.assign(seed=rows.seed + 2, trial_id=rows.trial_id + "b")], ignore_index=True)
    rows.loc[(rows.method == "kdv1") & (rows.variant == "orig"), "test_f1"] = 1 / 21
    t1 = build_table(cells_from_results(rows), 1)
    cell = t1.cells[("kdv1|orig", ("synthetic", "depth"))]
    assert cell.n == 4 and cell.ci is not None
    plot(t1, tmp_path / "t1.png")
    assert (tmp_path / "t1.png").stat().st_size > 0
