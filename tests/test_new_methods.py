"""Methods added outside the harness: planned, run by Ray workers, tracked, and given rows in the
tables with no harness edit; feature-level hooks train extra modules that never reach an export."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from helpers import tiny_spec

from cmkd.harness.engine.trial import run_trial
from cmkd.harness.sweep.bench_config import load_config
from cmkd.harness.sweep.plan import build_plan
from cmkd.methods import METHODS

PLUGIN = str(Path(__file__).with_name("plugin_methods.py"))
NEW = ("test-joint", "test-kd", "test-hint")


@pytest.fixture
def plugin():
    from cmkd.plugins import load_plugins

    load_plugins([PLUGIN])
    yield
    for name in NEW:  # the registry of this test process goes back to what it was
        METHODS.unregister(name)
    for module in [m for m in sys.modules if m.startswith("cmkd_plugin_plugin_methods")]:
        del sys.modules[module]


@pytest.mark.ray
def test_a_joint_method_and_a_text_option_student_run_through_bench_and_tables(plugin, ray_session, tmp_path):
    from cmkd.harness.sweep.tune import run_bench
    from cmkd.results.report import write_all_tables

    cfg = load_config("smoke", overrides=["methods=['test-kd', 'test-joint']", f"plugins=['{PLUGIN}']",
                                          "ablations=['no-agree']", "lskd=[false]",
                                          "method_options={test-kd={reduction='sum'}}"])
    plan = build_plan(cfg)
    kinds = {(p.spec.method, p.spec.scenario, p.stage) for p in plan}
    assert ("test-joint", "single", 1) in kinds and ("test-joint", "ablation", 1) in kinds
    assert ("test-kd", "cross-modal", 2) in kinds and ("test-kd", "multi-modal", 2) in kinds
    summary = run_bench(cfg, out=tmp_path / "b", say=lambda s: None)  # Ray workers import the plugin
    assert summary.finished == summary.planned == len(plan) and summary.failed == 0
    tables = write_all_tables(tmp_path / "b", echo=lambda s: None)
    md = (tables / "tables.md").read_text()
    t1, t2, t3 = (md.split("Table ")[i] for i in (1, 2, 3))
    for table in (t1, t2):
        assert "| Test KD" in table and "| Test joint" in table
    assert "w/o agreement" in t3 and "Test joint (full)" in t3
    assert "| KDv1" in t1  # the paper's rows keep their place (missing cells shown as '-')


def test_the_plan_refuses_an_ablation_no_listed_method_declares(plugin):
    from cmkd.errors import UserError

    with pytest.raises(UserError, match="ablation 'no-agree' is declared by none of the listed methods"):
        load_config("smoke", overrides=["methods=['kdv1']", "ablations=['no-agree']"])


def test_narrowing_a_profile_to_methods_without_ablations_needs_no_ablation_edit():
    """The smoke profile lists DisCoM-KD's ablations; narrowing its methods and scenarios to KD alone plans
    (before: refused, the ablations being declared by none of the listed methods)."""
    cfg = load_config("smoke", overrides=["methods=['kdv1']", "scenarios=['cross-modal', 'multi-modal']"])
    assert cfg.ablations and {p.spec.scenario for p in build_plan(cfg)} == {"single", "cross-modal", "multi-modal"}


def test_an_ablation_without_its_method_names_the_fixes():
    from cmkd.errors import UserError

    with pytest.raises(UserError) as err:
        load_config("smoke", overrides=["methods=['kdv1']"])  # the ablation scenario still selected
    msg = str(err.value)
    assert "is declared by none of the listed methods" in msg and "discomkd" in msg
    assert "--set \"ablations=[]\"" in msg and "leave 'ablation' out of scenarios" in msg


def test_feature_hooks_train_a_regressor_that_is_checkpointed_resumed_and_never_exported(plugin, teachers, tmp_path):
    spec = tiny_spec(method="test-hint", modality="depth", scenario="cross-modal", epochs=2)

    class Stop(Exception):
        pass

    def stop_after_first(report):
        raise Stop

    with pytest.raises(Stop):
        run_trial(spec, runs_root=teachers, out_dir=tmp_path / "t", on_epoch=stop_after_first)
    # a stopped trial writes its checkpoint whatever the policy: the regressor is in it, and trained
    ckpt = torch.load(tmp_path / "t" / "checkpoint.pt", weights_only=True)
    assert ckpt["state"]["epoch"] == 1 and "regressor.weight" in ckpt["method"]
    from cmkd.harness.engine.data import data_info, load_data

    cls = METHODS["test-hint"]
    torch.manual_seed(spec.seed)
    method = cls(data_info(load_data("synthetic", None, spec.dataset_options)), "depth", cls.Options())
    assert not torch.equal(ckpt["method"]["regressor.weight"], method.regressor.weight.detach())
    res = run_trial(spec, runs_root=teachers, out_dir=tmp_path / "t")
    assert res.resumed_from == [1] and res.epochs_run == 2
    # the best weights hold the deployable model alone: no regressor
    best = torch.load(tmp_path / "t" / "best_depth.pt", weights_only=True)
    assert set(best) == set(method.export("depth").state_dict())
    assert not any("regressor" in k for k in best)


def test_feature_stages_of_the_multi_modal_teacher_are_fused_sums():
    from cmkd.methods.backbones import FusionClassifier

    torch.manual_seed(0)
    net = FusionClassifier({"rgb": 3, "depth": 1}, 4).eval()
    x = {"rgb": torch.randn(2, 3, 32, 32), "depth": torch.randn(2, 1, 32, 32)}
    with torch.no_grad():
        logits, feats = net.forward_features(x, ("layer2", "pool"))
        torch.testing.assert_close(logits, net(x))
        from cmkd.archs import forward_stages as encoder_stages

        parts = [encoder_stages(net.encoders[m], x[m], ("layer2",))[1]["layer2"] for m in x]
        torch.testing.assert_close(feats["layer2"], parts[0] + parts[1])
    assert feats["pool"].shape == (2, 512)


def test_a_job_runs_without_ray_and_files_its_result(tmp_path):
    """The sweep's unit of work is a typed job that a test (or any scheduler) runs directly."""
    from cmkd.harness.sweep.job import TrialJob, run_tracked_trial
    from cmkd.harness.sweep.tracking import default_uri, setup_experiment
    from cmkd.results.store import ResultsStore

    uri = default_uri(tmp_path)
    exp = setup_experiment(uri, "direct", tmp_path / "art", {})
    spec = tiny_spec(epochs=1)
    from cmkd.harness.engine.data import load_data

    spec = spec.replace(data_fingerprint=load_data("synthetic", None, spec.dataset_options).fingerprint())
    job = TrialJob(trial_id=spec.trial_id(), name="direct", stage=1, spec=spec, teacher_id=None,
                   runs_root=str(tmp_path / "runs"), results_dir=str(tmp_path / "results"), tracking_uri=uri,
                   experiment_id=exp, config_hash="x", bench="direct", keep_weights=False)
    epochs = []
    result = run_tracked_trial(job, epochs.append)
    assert result is not None and len(epochs) == 1
    record = ResultsStore(tmp_path / "results").get(job.trial_id)
    assert record.status == "finished" and record.threads == 1 and record.mlflow_run_id
    assert not list((tmp_path / "runs").rglob("best_*.pt"))  # keep_weights=False frees the disk
    assert run_tracked_trial(job) is None  # finished: not run again


def test_pytest_runs_the_contract_tests_over_plugin_methods():
    """With $CMKD_PLUGINS set, the registry-parametrised contract tests are collected for the plugin's methods
    too (before: pytest never loaded the plugins, and the contract silently skipped them)."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "CMKD_PLUGINS": PLUGIN}
    run = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=--import-mode=importlib", "--collect-only",
                          "-q", "-p", "no:cacheprovider", "tests/test_registry_contract.py"], capture_output=True,
                         text=True, env=env, cwd=root, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    for name in NEW:
        assert f"[{name}]" in run.stdout, f"{name} is not contract-tested"
