"""The floors hold (docs/architecture.md): each module imports only from its own floor or the floors below
it, and no modules import each other in a cycle, lazy imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: bottom to top; a module belongs to the first (longest) prefix that names it
FLOORS = [
    ("floor 0: errors, registry, plugins", ("cmkd.errors", "cmkd.registry", "cmkd.plugins")),
    ("floor 1: data sets, architectures", ("cmkd.datasets", "cmkd.archs")),
    ("floor 2: methods", ("cmkd.methods",)),
    ("floor 3: engine", ("cmkd.harness.engine", "cmkd.harness")),  # harness/__init__ only says where things are
    ("floor 4: results", ("cmkd.results",)),
    ("floor 5: sweep", ("cmkd.harness.sweep",)),
    ("floor 6: CLI", ("cmkd.harness.cli", "cmkd.__main__")),
]
PACKAGES = ["datasets", "archs", "methods", "harness", "results"]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["cmkd", *parts])


def floor_of(module: str) -> int | None:
    """The floor of the longest prefix that names ``module``."""
    found = [(len(p), i) for i, (_, prefixes) in enumerate(FLOORS) for p in prefixes
             if module == p or module.startswith(p + ".")]
    return max(found)[1] if found else None


def imports_of(path: Path) -> set[str]:
    """The cmkd modules a file imports, absolute or relative, at module level or inside functions."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from pkg import module` names a module too
            found |= {f"{target}.{a.name}" for a in node.names}
    return {m for m in found if m == "cmkd" or m.startswith("cmkd.")}


def all_modules() -> dict[str, Path]:
    paths = [ROOT / "errors.py", ROOT / "registry.py", ROOT / "plugins.py", ROOT / "__main__.py"]
    for pkg in PACKAGES:
        paths += sorted((ROOT / pkg).rglob("*.py"))
    return {module_name(p): p for p in paths}


def known_module(name: str, modules: dict[str, Path]) -> str | None:
    """The longest module of ours that ``name`` is or lies in (``cmkd.methods.X`` from ``from cmkd.methods import X``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    out = {}
    for name, path in modules.items():
        targets = {known_module(t, modules) for t in imports_of(path)}
        out[name] = {t for t in targets if t and t != name}
    return out


def test_every_module_has_a_floor():
    assert [m for m in all_modules() if floor_of(m) is None] == []


def test_no_module_imports_from_a_floor_above_it():
    upward = {}
    for name, targets in graph().items():
        bad = sorted(t for t in targets if floor_of(t) > floor_of(name))
        if bad:
            upward[name] = [f"{t} ({FLOORS[floor_of(t)][0]})" for t in bad]
    assert upward == {}, f"imports from floors above: {upward}"


def test_no_import_cycles():
    g = graph()
    # a package's __init__ that re-exports its own modules is not a cycle of modules
    g = {m: {t for t in ts if not (m.startswith(t + ".") and t in g)} for m, ts in g.items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for t in sorted(g.get(node, ())):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[node] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert cycles == [], f"import cycles: {[' -> '.join(c) for c in cycles]}"


@pytest.mark.parametrize("source, expected", [
    ("from cmkd.harness.sweep.plan import build_plan\n", "cmkd.harness.sweep.plan"),
    ("from ..sweep import plan\n", "cmkd.harness.sweep.plan"),
    ("from .trial import run_trial\n", "cmkd.harness.engine.trial"),
])
def test_the_checker_sees_an_upward_import(tmp_path, source, expected, monkeypatch):
    """A module of the engine that imports the sweep, written three ways, is caught."""
    fake = ROOT / "harness" / "engine" / "_floor_probe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source if self == fake else Path.read_bytes(self).decode())
    assert expected in imports_of(fake)
    assert floor_of(expected) >= floor_of("cmkd.harness.engine._floor_probe")


def test_the_architecture_page_names_every_floor():
    page = (ROOT / "docs" / "architecture.md").read_text()
    for title, prefixes in FLOORS:
        for prefix in prefixes:
            folder = prefix.removeprefix("cmkd.").replace(".", "/")
            assert folder in page or prefix in page, f"docs/architecture.md does not name {prefix} ({title})"


def test_errors_imports_nothing_of_cmkd():
    assert imports_of(ROOT / "errors.py") == set()


def test_the_harness_and_results_know_no_method_by_name():
    """Plan, tables, teachers, sweep and store read what methods declare; only the profiles name methods."""
    from cmkd.methods import METHODS

    named = {}
    for folder in ("harness", "results"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in METHODS:
                    named.setdefault(str(path.relative_to(ROOT)), set()).add(node.value)
    assert named == {}


def test_no_network_family_is_assumed_outside_the_architectures():
    """Methods, engine, sweep and results read an encoder's declared width and cross-family stage names:
    no ResNet stage name (``layer1``..``layer4``) outside ``archs/``, no pooled width (512) in ``methods/``."""
    import re

    offences = []
    for name, path in all_modules().items():
        if name.startswith("cmkd.archs"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"layer[1-4]", node.value):
                offences.append(f"{name}:{node.lineno} {node.value!r}")
            if (name.startswith("cmkd.methods") and isinstance(node, ast.Constant) and type(node.value) is int
                    and node.value == 512):
                offences.append(f"{name}:{node.lineno} 512")
    assert offences == []


def test_the_family_rule_catches_an_offence(tmp_path, monkeypatch):
    """The rule above can fail: a method module naming 'layer3' is found."""
    probe = ROOT / "methods" / "_family_probe.py"
    probe.write_text('STAGE = "layer3"\nWIDTH = 512\n')
    try:
        import pytest

        with pytest.raises(AssertionError, match="layer3"):
            test_no_network_family_is_assumed_outside_the_architectures()
    finally:
        probe.unlink()
