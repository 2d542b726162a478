"""report.html in a real browser (headless Chromium), on the report of a real smoke benchmark; the model
card of an exported model; the report of a folder with a corrupt record."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from browser import chromium, console_errors, require_browser

from cmkd.harness.cli.main import main

pytestmark = pytest.mark.ray

SETS = ["methods=['kdv1']", "scenarios=['cross-modal']", "keep_weights='all'", "train.epochs=2"]


@pytest.fixture(scope="module")
def bench(ray_session, tmp_path_factory) -> Path:
    """A real benchmark folder: STUDENT, KDv1 ORIG and w/ LSKD, two seeds, two epochs (cmkd bench wrote its report)."""
    out = tmp_path_factory.mktemp("report") / "b"
    args = [a for s in SETS for a in ("--set", s)]
    assert main(["bench", "--profile", "smoke", "--seeds", "0,1", "--out", str(out), *args]) == 0
    return out


@pytest.fixture(scope="module")
def page(bench):
    require_browser()
    driver = chromium()
    driver.get((bench / "report.html").resolve().as_uri())
    yield driver
    driver.quit()


def test_the_page_loads_offline_with_no_console_errors_and_says_what_ran(bench, page):
    from selenium.webdriver.common.by import By

    assert console_errors(page) == []
    html = (bench / "report.html").read_text()
    # nothing is fetched: no remote script, image or stylesheet (the only remote addresses are the MLflow UI
    # links a reader may click)
    assert not re.search(r"""src=["'](https?:)?//""", html) and "<link" not in html and "@import" not in html
    assert {m for m in re.findall(r"""href=["'](https?://[^/"']+)""", html)} == {"http://127.0.0.1:5000"}
    counts = page.find_element(By.ID, "counts").text
    assert counts.startswith("8 finished, 0 failed, 0 skipped of 8 planned"), counts
    machine = page.find_element(By.ID, "machine").text
    assert "thread(s) per trial" in machine and "kernels" in machine
    assert page.find_element(By.ID, "missing-none")
    # every image is inline and decodes
    for img in page.find_elements(By.CSS_SELECTOR, "img.plot"):
        assert img.get_attribute("src").startswith("data:image/png;base64,")
        assert page.execute_script("return arguments[0].naturalWidth", img) > 100


def test_the_tables_hold_the_numbers_of_tables_md_and_stats_csv(bench, page):
    from selenium.webdriver.common.by import By

    stats = pd.read_csv(bench / "tables" / "stats.csv")
    md = (bench / "tables" / "tables.md").read_text()
    shown = {}
    grid = page.find_element(By.ID, "table1-grid")
    heads = [th.text for th in grid.find_elements(By.CSS_SELECTOR, "thead th")]
    for tr in grid.find_elements(By.CSS_SELECTOR, "tbody tr"):
        tds = tr.find_elements(By.TAG_NAME, "td")
        for head, td in zip(heads[1:], tds[1:]):
            shown[(tds[0].text, head)] = td.get_attribute("data-mean")
    t1 = stats[stats.table == 1]
    assert len(shown) == len(t1) == 4  # TEACHER, STUDENT, KDv1 ORIG, KDv1 w/ LSKD on depth
    for r in t1.itertuples():
        value = shown[(r.label, "Synthetic RGB→DEPTH")]
        assert value == f"{r.mean:.2f}", (r.label, value, r.mean)
        assert value in md
    # a leaderboard row carries the same mean, interval and Holm p as stats.csv
    board = page.find_element(By.CSS_SELECTOR, "table.leaderboard")
    rows = {tr.find_elements(By.TAG_NAME, "td")[0].text: tr.find_elements(By.TAG_NAME, "td")
            for tr in board.find_elements(By.CSS_SELECTOR, "tbody tr")}
    kd = t1[t1.label == "KDv1 ORIG"].iloc[0]
    cells = rows["KDv1 ORIG"]
    assert cells[1].text == f"{kd['mean']:.2f}" and cells[2].text == f"{kd.ci95_low:.2f} – {kd.ci95_high:.2f}"
    assert cells[4].text.split()[0] == (f"{kd.p_holm:.3f}" if kd.p_holm >= 0.001 else f"{kd.p_holm:.2g}")


def test_sorting_a_leaderboard_column_reorders_its_rows(page):
    from selenium.webdriver.common.by import By

    board = page.find_element(By.CSS_SELECTOR, "table.leaderboard")

    def column(i: int) -> list[str]:
        return [tr.find_elements(By.TAG_NAME, "td")[i].get_attribute("data-v")
                for tr in board.find_elements(By.CSS_SELECTOR, "tbody tr")]

    heads = board.find_elements(By.CSS_SELECTOR, "thead th")
    before = column(1)
    assert [float(v) for v in before] == sorted((float(v) for v in before), reverse=True)  # rendered best first
    heads[1].click()
    after = [float(v) for v in column(1)]
    assert after == sorted(after) and after != [float(v) for v in before]
    assert heads[1].get_attribute("aria-sort") == "ascending"
    heads[1].click()
    assert [float(v) for v in column(1)] == sorted(after, reverse=True)
    heads[0].click()
    names = column(0)
    assert names == sorted(names)


def test_a_cells_seeds_open_on_demand_with_links_to_their_trial_folders(bench, page, tmp_path):
    from selenium.webdriver.common.by import By

    cell = page.find_element(By.CSS_SELECTOR, "#table1-grid tbody tr td[data-mean] details")
    links = cell.find_elements(By.TAG_NAME, "a")
    assert not any(a.is_displayed() for a in links)  # closed until asked
    cell.find_element(By.TAG_NAME, "summary").click()
    shown = [a for a in links if a.is_displayed()]
    assert len(shown) >= 4  # two seeds, each with its trial folder and MLflow run
    folders = [a.get_attribute("href") for a in shown if a.text == "trial folder"]
    assert len(folders) == 2
    for href in folders:
        assert Path(href.removeprefix("file://")).joinpath("result.json").is_file(), href
    assert all(a.get_attribute("href").startswith("http://127.0.0.1:5000/#/experiments/")
               for a in shown if a.text == "MLflow run")
    page.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_a_corrupt_record_is_named_and_the_rest_still_renders(bench, tmp_path, capsys):
    copy = tmp_path / "b"
    shutil.copytree(bench, copy, ignore=shutil.ignore_patterns("ray", ".lock", "mlartifacts", "runs"))
    victim = sorted((copy / "results").glob("*.json"))[0]
    victim.write_text('{"trial_id": "cut sh')
    assert main(["report", str(copy)]) == 0
    html = (copy / "report.html").read_text()
    assert f"set aside as damaged: results/.corrupt/{victim.name}." in html and "JSONDecodeError" in html
    assert "7 finished" in html and 'id="table1-grid"' in html
    assert "report:" in capsys.readouterr().out
    # a folder made before run.json existed: the header says what it does not know, and names what records hold
    (copy / "run.json").unlink()
    assert main(["report", str(copy)]) == 0
    html = (copy / "report.html").read_text()
    assert "not recorded (run.json missing); trials ran on host(s)" in html and "with 1 thread(s)" in html


def test_report_refuses_what_is_not_a_benchmark_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert main(["report", str(tmp_path)]) == 2
    assert main(["report", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "no" / "such" / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("cmkd: error: ") for line in err)
    assert "not a folder" in err[0] and "no results/" in err[1]
    assert all("must be a file path in an existing folder" in line for line in err[2:])
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_an_exported_model_gets_a_model_card_with_its_cells_interval(bench, tmp_path):
    from scipy import stats

    rows = pd.read_parquet(bench / "results.parquet")
    kd = rows[(rows.method == "kdv1") & (rows.variant == "orig") & (rows.status == "finished")].sort_values("seed")
    trial = kd.iloc[0]
    folder = next((bench / "runs").rglob(f"seed{trial.seed}-{trial.trial_id}"))
    assert main(["export", str(folder), "--out", str(tmp_path / "deploy")]) == 0
    card = (tmp_path / "deploy" / "model_depth.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    result = front["model-index"][0]["results"][0]
    assert result["dataset"]["name"] == "synthetic" and result["task"]["type"] == "image-classification"
    this, cell = result["metrics"]
    assert this["value"] == round(100 * trial.test_f1, 2)
    f1 = (kd.test_f1 * 100).to_numpy()
    low, high = stats.t.interval(0.95, len(f1) - 1, loc=f1.mean(), scale=stats.sem(f1))
    assert cell["args"]["seeds"] == 2 and cell["value"] == round(f1.mean(), 2)
    assert cell["args"]["ci95"] == [round(low, 2), round(high, 2)]
    side = (tmp_path / "deploy" / "model_depth.json").read_text()
    assert '"method": "kdv1"' in side
    for fact in ("input `depth`", "| teacher | resnet18", "| parameters |", "| forward FLOPs per sample |",
                 "## Intended use", "## Limits known from this benchmark", "STUDENT (the same network"):
        assert fact in card, fact


def test_tables_of_another_metric_from_the_folder_and_from_mlflow(bench, tmp_path, capsys):
    from cmkd.results.cells import METRICS
    from cmkd.results.provenance import read_run_log

    rows = pd.read_parquet(bench / "results.parquet")
    done = rows[rows.status == "finished"]
    assert done[["test_accuracy", "test_avg_accuracy"]].notna().all().all()
    # stats.csv of the F1 tables carries each cell's other scores, the mean over its seeds
    st = pd.read_csv(bench / "tables" / "stats.csv")
    kd = st[(st.table == 1) & (st.label == "KDv1 ORIG")].iloc[0]
    seeds = done[(done.method == "kdv1") & (done.variant == "orig")]
    assert kd.mean_accuracy == pytest.approx(100 * seeds.test_accuracy.mean())
    assert kd.mean_avg_accuracy == pytest.approx(100 * seeds.test_avg_accuracy.mean())
    assert main(["tables", "--from", str(bench), "--metric", "accuracy"]) == 0
    md = (bench / "tables-accuracy" / "tables.md").read_text()
    assert "Table 1: cross-modal scenario (teacher on the rich modality), accuracy (%)" in md
    acc = pd.read_csv(bench / "tables-accuracy" / "stats.csv")
    assert set(acc.metric) == {"accuracy"}
    assert acc.set_index(["table", "label"])["mean"].loc[(1, "KDv1 ORIG")] == pytest.approx(kd.mean_accuracy)
    # the same table read back from the MLflow store
    session = read_run_log(bench).sessions[-1]
    assert main(["tables", "--experiment", session.experiment, "--tracking-uri", session.tracking_uri,
                 "--metric", "accuracy", "--out", str(tmp_path / "from-mlflow")]) == 0
    back = pd.read_csv(tmp_path / "from-mlflow" / "stats.csv")
    assert back.set_index(["table", "label"])["mean"].loc[(1, "KDv1 ORIG")] == pytest.approx(kd.mean_accuracy)
    # refused in one line, before any work
    capsys.readouterr()
    assert main(["tables", "--from", str(bench), "--metric", "kappa", "--selection", "last"]) == 2
    assert main(["tables", "--from", str(bench), "--metric", "accuracy", "--compare-paper"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "best validation epoch only" in err[0] and "weighted F1 only" in err[1]
    # the CLI's choices are the one declaration's
    from cmkd.harness.cli.main import build_parser

    tables = build_parser()._subparsers._group_actions[0].choices["tables"]
    assert tuple(next(a for a in tables._actions if a.dest == "metric").choices) == tuple(METRICS)


def test_the_pages_template_is_code_tracked_and_shipped():
    """The template lives under results/, where benchmark folders are git-ignored: it must stay tracked, and
    listed as package data, or a fresh clone renders no page."""
    import subprocess
    import tomllib

    from cmkd.results.page import TEMPLATES

    template = TEMPLATES / "report.html.j2"
    assert template.is_file()
    root = TEMPLATES.parent.parent
    if (root / ".git").exists():
        tracked = subprocess.run(["git", "-C", str(root), "ls-files", "--error-unmatch", str(template)],
                                 capture_output=True, text=True)
        assert tracked.returncode == 0, "results/templates/report.html.j2 is not tracked by git"
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["cmkd.results"]
    assert "templates/*.j2" in data
