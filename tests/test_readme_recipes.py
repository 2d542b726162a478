"""The README's "Adding a method" and "Adding a data set" recipes work as written: their code blocks are
installed as files in a scratch copy of the project and run through the real commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def recipe_files() -> dict[str, str]:
    """``# <path>``-headed python blocks of the two recipe sections: path -> code."""
    text = (ROOT / "README.md").read_text()
    start, end = text.index("## Adding a method"), text.index("## Benchmarks")
    blocks = re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)
    files = {}
    for block in blocks:
        first, _, _ = block.partition("\n")
        assert first.startswith("# "), f"a recipe block must start with '# <path>': {first!r}"
        files[first[2:].strip()] = block
    return files


def test_the_recipes_name_their_files():
    assert set(recipe_files()) == {"methods/my_losses.py", "methods/mykd.py", "tests/test_mykd.py", "datasets/mydata.py"}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A copy of the package (as ``cmkd``) with the recipe files added, importable through PYTHONPATH."""
    top = tmp_path_factory.mktemp("scratch")
    pkg = top / "cmkd"
    shutil.copytree(ROOT, pkg, ignore=shutil.ignore_patterns(".venv", ".git", "results", "cmkd-runs", "docs",
                                                              "__pycache__", "*.egg-info", "data"))
    (pkg / "results").mkdir()
    for f in ("__init__.py", "paper-tables.csv"):
        shutil.copy(ROOT / "results" / f, pkg / "results" / f)
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


def test_the_method_recipes_test_passes_with_the_shared_teachers(scratch):
    env = {**os.environ, "PYTHONPATH": str(scratch), "RAY_USAGE_STATS_ENABLED": "0"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=--import-mode=importlib",
                          "tests/test_mykd.py"],
                         capture_output=True, text=True, env=env, cwd=scratch / "cmkd", timeout=600)
    assert run.returncode == 0 and "3 passed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]


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
