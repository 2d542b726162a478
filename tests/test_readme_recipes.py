"""The documented recipes work as written: docs/adding.md's "Adding a method" and "Adding a data set" code
blocks are installed as files in a scratch copy of the project and run through the real commands, and the
README's smallest useful run runs."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def recipe_files() -> dict[str, str]:
    """``# <path>``-headed python blocks of the two recipe sections: path -> code."""
    text = (ROOT / "docs" / "adding.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text[text.index("## Adding a method"):], flags=re.S)
    files = {}
    for block in blocks:
        first, _, _ = block.partition("\n")
        assert first.startswith("# "), f"a recipe block must start with '# <path>': {first!r}"
        files[first[2:].strip()] = block
    return files


def test_the_recipes_name_their_files():
    assert set(recipe_files()) == {"methods/my_losses.py", "methods/mykd.py", "tests/test_mykd.py", "datasets/mydata.py",
                                   "tests/test_mydata.py"}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A copy of the package (as ``cmkd``) with the recipe files added, importable through PYTHONPATH."""
    top = tmp_path_factory.mktemp("scratch")
    pkg = top / "cmkd"
    skip = shutil.ignore_patterns(".venv", ".git", "cmkd-runs", "docs", "__pycache__", "*.egg-info", "data")

    def ignore(folder: str, names: list[str]) -> set[str]:  # results/ holds code; its sub-folders, benchmark output
        below = {n for n in names if (Path(folder) / n).is_dir()} if Path(folder) == ROOT / "results" else set()
        return set(skip(folder, names)) | below

    shutil.copytree(ROOT, pkg, ignore=ignore)
    for rel, code in recipe_files().items():
        (pkg / rel).write_text(code)
    return top


def cmkd(scratch: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(scratch), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run([sys.executable, "-m", "cmkd", *args], capture_output=True, text=True, env=env,
                          cwd=scratch, timeout=timeout)


def test_the_method_recipe_lists_trains_and_plans(scratch):
    listed = cmkd(scratch, "methods")
    assert listed.returncode == 0 and "mykd" in listed.stdout and "reduction: str = 'mean' [mean|sum]" in listed.stdout
    data = ["--dataset", "synthetic", "--data-opt", "n_samples=66", "--data-opt", "image_size=16", "--epochs", "1",
            "--batch-size", "16", "--runs", str(scratch / "runs")]
    teacher = cmkd(scratch, "train", "--method", "student", "--modality", "rgb", *data)
    assert teacher.returncode == 0, teacher.stderr[-1500:]
    student = cmkd(scratch, "train", "--method", "mykd", "--modality", "depth", "--scenario", "cross-modal",
                   "--opt", "reduction=sum", *data)
    assert student.returncode == 0 and "test F1 [depth]" in student.stdout, student.stderr[-1500:]
    plan = cmkd(scratch, "bench", "--profile", "smoke", "--set", "methods=['mykd']", "--set", "ablations=[]",
                "--dry-run", "--set", "per_image_ms=1")
    assert plan.returncode == 0 and "mykd (cross-modal)" in plan.stdout and "mykd (multi-modal)" in plan.stdout


def recipe_pytest(scratch: Path, test_file: str) -> subprocess.CompletedProcess:
    """Run one of the recipes' own test files with pytest inside the scratch copy."""
    env = {**os.environ, "PYTHONPATH": str(scratch), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o",
                           "addopts=--import-mode=importlib", test_file],
                          capture_output=True, text=True, env=env, cwd=scratch / "cmkd", timeout=600)


@pytest.mark.parametrize("test_file, passed", [("tests/test_mykd.py", 3), ("tests/test_mydata.py", 1)])
def test_the_recipes_own_tests_pass(scratch, test_file, passed):
    """The method recipe's test (with the session's shared teachers) and the data-set recipe's test."""
    run = recipe_pytest(scratch, test_file)
    assert run.returncode == 0 and f"{passed} passed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]


def test_the_data_set_recipe_reads_its_layout_and_trains(scratch, tmp_path):
    root = tmp_path / "mydata"
    (root / "optical").mkdir(parents=True)
    (root / "radar").mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(66):
        label = i % 3
        np.save(root / "optical" / f"s{i}.npy", rng.random((3, 16, 16), dtype=np.float32) + label)
        np.save(root / "radar" / f"s{i}.npy", rng.random((1, 16, 16), dtype=np.float32) + label)
        lines.append(f"s{i},{label}")
    (root / "labels.csv").write_text("\n".join(lines))
    listed = cmkd(scratch, "datasets", "--root", str(root))
    assert listed.returncode == 0 and "mydata" in listed.stdout
    missing = cmkd(scratch, "train", "--method", "student", "--dataset", "mydata", "--root", str(tmp_path / "none"),
                   "--modality", "optical")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    trained = cmkd(scratch, "train", "--method", "student", "--dataset", "mydata", "--root", str(root), "--modality",
                   "radar", "--epochs", "1", "--batch-size", "8", "--runs", str(tmp_path / "runs"))
    assert trained.returncode == 0 and "test F1 [radar]" in trained.stdout, trained.stderr[-1500:]


@pytest.mark.ray
def test_the_readme_smallest_useful_run_runs(tmp_path):
    """The README's one-line smallest run, as written (its --out moved into this test's folder)."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("**The smallest useful run**"):]
    line = re.search(r"```bash\n(.*?)\n```", block, flags=re.S).group(1).strip()
    args = shlex.split(line)
    assert args[0] == ".venv/bin/cmkd" and args[-2] == "--out"
    out = tmp_path / "smallest"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
    run = subprocess.run([sys.executable, "-m", "cmkd", *args[1:-1], str(out)], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "0 failed" in run.stdout and (out / "tables" / "tables.md").is_file()
    table1 = (out / "tables" / "tables.md").read_text().split("Table 2")[0]
    assert "| KDv1" in table1 and "| STUDENT" in table1
