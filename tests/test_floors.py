"""The floors hold: each package imports only from the floors below it (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: package -> the cmkd packages it may import (besides itself)
ALLOWED = {"datasets": {"errors"}, "methods": {"errors", "datasets"}}


def cmkd_imports(path: Path, package: str) -> set[str]:
    """The cmkd sub-packages a module imports (absolute ``cmkd.X`` or relative ``..X``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:
                continue  # within the package
            if node.level >= 2:
                names = [f"cmkd.{node.module or ''}"]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "cmkd" and len(parts) > 1 and parts[1] != package:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_upward_import(package):
    upward = {}
    for path in sorted((ROOT / package).glob("*.py")):
        bad = cmkd_imports(path, package) - ALLOWED[package]
        if bad:
            upward[path.name] = sorted(bad)
    assert upward == {}, f"{package}/ imports from floors above it: {upward}"


def test_the_checker_sees_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from cmkd.harness.errors import UserError\nfrom ..harness import engine\nfrom .base import x\n")
    assert cmkd_imports(module, "methods") == {"harness"}


def test_errors_imports_nothing_of_cmkd():
    assert cmkd_imports(ROOT / "errors.py", "errors") == set()


def test_the_harness_knows_no_method_by_name():
    """Plan, tables, teachers, sweep and store read what methods declare; only the profiles name methods."""
    from cmkd.methods import METHODS

    named = {}
    for path in sorted((ROOT / "harness").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in METHODS:
                named.setdefault(path.name, set()).add(node.value)
    assert named == {}
