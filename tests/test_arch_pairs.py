"""Teacher -> student pairs swept like seeds: the plan (each pair its own STUDENT rows and teachers, the paper's
pair's trials unchanged), where each trial lands in the tables, and a real benchmark of two pairs."""

from __future__ import annotations

import pandas as pd
import pytest

from cmkd.errors import UserError
from cmkd.harness.engine.teachers import teacher_spec
from cmkd.harness.sweep.bench_config import load_config
from cmkd.harness.sweep.plan import build_plan
from cmkd.methods import teacher_method
from cmkd.results.cells import DEFAULT_PAIR, cells_from_results

TWO = "pairs=[{teacher='resnet18', student='resnet18'}, {teacher='resnet34', student='mobilenet_v3_small'}]"
BASE = ["methods=['kdv1', 'discomkd']", "scenarios=['cross-modal', 'multi-modal']", "lskd=[false]"]


def test_each_pair_plans_its_own_students_and_teachers_and_the_papers_pair_is_unchanged():
    plain = build_plan(load_config("smoke", overrides=BASE))
    both = build_plan(load_config("smoke", overrides=[*BASE, TWO]))
    assert {p.trial_id for p in plain} < {p.trial_id for p in both}  # the paper's pair: the same trials, same ids
    assert load_config("smoke", overrides=BASE).config_hash() != load_config("smoke", overrides=[*BASE, TWO]).config_hash()
    by_id = {p.trial_id: p for p in both}
    cross, multi = teacher_method("cross-modal").name, teacher_method("multi-modal").name
    new = [p for p in both if p.trial_id not in {q.trial_id for q in plain}]
    archs = sorted((p.spec.method, p.spec.modality or "-", p.spec.arch) for p in new if p.stage == 1)
    assert archs == sorted([(cross, "depth", "mobilenet_v3_small"), (cross, "rgb", "mobilenet_v3_small"),
                            (cross, "rgb", "resnet34"), (multi, "-", "resnet34"), ("discomkd", "-", "mobilenet_v3_small")])
    for p in new:
        if p.stage == 2:  # each student of the new pair points at the resnet34 teacher of its scenario
            assert (p.spec.arch, p.spec.teacher_arch) == ("mobilenet_v3_small", "resnet34")
            teacher = by_id[p.teacher_id].spec
            assert teacher.arch == "resnet34" and teacher.method == (cross if p.spec.scenario == "cross-modal" else multi)
            assert p.pairs == ("resnet34->mobilenet_v3_small",)
    shared = [p for p in both if p.spec.method == cross and p.spec.arch == "resnet18" and p.spec.modality == "rgb"]
    assert shared[0].pairs == ("resnet18->resnet18",)


def test_the_teacher_lookup_carries_the_teachers_own_options_and_architecture():
    """The plan gives a student its teacher's method options; the engine's lookup (teacher_spec) keeps them, so
    the teacher the plan trained is the one the student finds (issue 25: they were dropped)."""
    cfg = load_config("smoke", overrides=[*BASE, TWO])
    for p in build_plan(cfg):
        if p.stage == 2:
            s = p.spec.replace(teacher_options={"marker": 1})
            assert teacher_spec(s, s.scenario, None if s.scenario == "multi-modal" else _info()).method_options == {"marker": 1}


def _info():
    from cmkd.methods import DataInfo

    return DataInfo("synthetic", {"rgb": 3, "depth": 1}, {"rgb": (16, 16), "depth": (16, 16)}, 6, "rgb")


def test_a_pair_a_method_cannot_align_is_refused_when_planned():
    cfg = load_config("smoke", overrides=["methods=['fitnets']", "scenarios=['cross-modal']",
                                          "pairs=[{teacher='resnet8x4', student='resnet18'}]"])
    with pytest.raises(UserError, match="fitnets: no regressor maps a student map of 2x2 onto a teacher map of 8x8"):
        build_plan(cfg)
    with pytest.raises(UserError, match="did you mean 'resnet34'"):
        load_config("smoke", overrides=["pairs=[{teacher='resnet43', student='resnet18'}]"])
    with pytest.raises(UserError, match="pairs lists resnet18->resnet18 twice"):
        load_config("smoke", overrides=["pairs=[{teacher='resnet18'}, {student='resnet18'}]"])


def _row(method, modality, arch, f1, pairs, scenario="single", teacher_arch="resnet18", variant=""):
    return {"dataset": "synthetic", "entry": "", "scenario": scenario, "method": method, "variant": variant,
            "modality": modality, "seed": 0, "arch": arch, "teacher_arch": teacher_arch, "pairs": pairs,
            "test_f1": f1, "status": "finished"}


def test_a_trial_lands_in_every_pair_it_serves_by_its_role_there():
    """A resnet18 STUDENT on rgb is the TEACHER of the resnet18 pair only; the resnet34 one is the TEACHER of
    the other pair and nobody's STUDENT; a student's row is its own pair's."""
    other = "resnet34->mobilenet_v3_small"
    rows = pd.DataFrame([
        _row("student", "rgb", "resnet18", 0.50, DEFAULT_PAIR), _row("student", "depth", "resnet18", 0.20, DEFAULT_PAIR),
        _row("student", "rgb", "resnet34", 0.60, other), _row("student", "depth", "mobilenet_v3_small", 0.10, other),
        _row("student", "rgb", "mobilenet_v3_small", 0.40, other),
        _row("kdv1", "depth", "resnet18", 0.30, DEFAULT_PAIR, "cross-modal", variant="orig"),
        _row("kdv1", "depth", "mobilenet_v3_small", 0.15, other, "cross-modal", "resnet34", "orig"),
    ])
    cells = cells_from_results(rows)
    t1 = cells[cells.table == 1].set_index(["dataset", "row"]).f1.round(2).to_dict()
    a, b = f"synthetic [{DEFAULT_PAIR}]", f"synthetic [{other}]"
    assert t1 == {(a, "TEACHER"): 50.0, (a, "STUDENT"): 20.0, (a, "kdv1|orig"): 30.0,
                  (b, "TEACHER"): 60.0, (b, "STUDENT"): 10.0, (b, "kdv1|orig"): 15.0}
    alone = cells_from_results(rows[rows.pairs == DEFAULT_PAIR])  # the paper's pair alone: no pair in the keys
    assert set(alone.dataset) == {"synthetic"}


def readme_pairs_overrides() -> list[str]:
    """The --set values of the README's pairs recipe, as written (its profile is smoke, its --out a scratch folder)."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).parents[1] / "README.md").read_text()
    block = text[text.index("## Any teacher, any student"):]
    args = shlex.split(re.search(r"```bash\n(.*?)\n```", block, flags=re.S).group(1))
    assert args[:4] == [".venv/bin/cmkd", "bench", "--profile", "smoke"] and args[-2] == "--out"
    return [args[i + 1] for i, a in enumerate(args) if a == "--set"]


def test_the_readme_pairs_recipe_is_this_tests_config():
    assert readme_pairs_overrides() == ["methods=['kdv1']", "scenarios=['cross-modal']", "lskd=[false]", TWO]


@pytest.mark.ray
def test_a_benchmark_of_two_pairs_runs_tables_them_and_records_costs(ray_session, tmp_path):
    from cmkd.harness.sweep.tune import run_bench
    from cmkd.results.report import write_all_tables

    cfg = load_config("smoke", overrides=readme_pairs_overrides())
    summary = run_bench(cfg, out=tmp_path / "b", say=lambda s: None)
    assert summary.finished == summary.planned == 7 and summary.failed == 0
    write_all_tables(tmp_path / "b", echo=lambda s: None)
    rows = pd.read_parquet(tmp_path / "b" / "results.parquet")
    assert set(rows.arch) == {"resnet18", "resnet34", "mobilenet_v3_small"}
    assert rows[["params", "flops", "latency_ms", "deploy_images_per_s"]].notna().all().all()
    small = rows[rows.arch == "mobilenet_v3_small"].params.iloc[0]
    assert small < rows[rows.arch == "resnet18"].params.iloc[0] / 5
    pairs = pd.read_csv(tmp_path / "b" / "tables" / "pairs1.csv", index_col=0)
    assert list(pairs.columns) == ["Synthetic [resnet18->resnet18]", "Synthetic [resnet34->mobilenet_v3_small]"]
    assert pairs.loc[["TEACHER", "STUDENT", "KDv1 ORIG"]].notna().all().all()
    cost = pd.read_csv(tmp_path / "b" / "tables" / "cost.csv")
    assert {"arch", "params_M", "MFLOPs", "latency_ms", "deploy_images_per_s"} <= set(cost.columns)


@pytest.mark.parametrize("pair, message", [
    ("{teacher='resnet18', student='convnext_tiny'}", "'convnext_tiny' takes images with sides of at least 32 px"),
    ("{teacher='vit_b_16', student='resnet18'}", None),  # 16 px: a ViT-B/16 teacher fits
    ("{teacher='resnet18', student='rgb=resnet8x4,depth=wrn_16_2'}", "discomkd cuts each encoder's pooled features"),
])
def test_a_pair_whose_networks_cannot_take_the_data_is_refused_when_planned(pair, message):
    """Every kind of trial (teachers and STUDENT rows too, not only the distilled students) is checked at
    planning, before any compute."""
    cfg = load_config("smoke", overrides=["methods=['kdv1', 'discomkd']", "scenarios=['cross-modal']", f"pairs=[{pair}]"])
    if message is None:
        assert build_plan(cfg)
        return
    with pytest.raises(UserError, match=message):
        build_plan(cfg)


def test_plan_costs_scale_with_each_networks_counted_flops():
    """A trial's planned cost is its method's declared epoch cost times its networks' counted FLOPs against
    resnet18's (no constant per architecture): a MobileNetV3 student costs less, a ResNet-34 teacher more."""
    from cmkd.harness.sweep.plan import network_cost

    info = _info()
    assert network_cost(info, "resnet18") == 1.0
    assert network_cost(info, "mobilenet_v3_small") < 0.2 < 1.5 < network_cost(info, "resnet34") < 2.5
    cfg = load_config("smoke", overrides=[*BASE, TWO])
    plan = build_plan(cfg)
    cost = {(p.spec.method, p.spec.modality, p.spec.arch): p.cost() for p in plan if p.spec.method == "student"}
    assert cost[("student", "rgb", "resnet34")] > cost[("student", "rgb", "resnet18")] > cost[("student", "rgb", "mobilenet_v3_small")]
