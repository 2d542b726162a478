"""Shared fixtures."""

import helpers  # noqa: F401  (sets the offline environment variables first)
import pytest

from cmkd.plugins import load_plugins

# methods and data sets of $CMKD_PLUGINS join the registries before the tests are collected, so the
# registry-parametrised contract tests (test_registry_contract.py) check them too
load_plugins()


@pytest.fixture
def runs(tmp_path):
    return tmp_path / "runs"


@pytest.fixture(scope="session")
def teachers(tmp_path_factory):
    """A runs folder holding a finished cross-modal and multi-modal teacher for the tiny synthetic data
    (seed 0, two epochs), trained once per test session: a new KD method's test passes it as
    ``run_trial(tiny_spec(method=..., modality="depth", scenario="cross-modal"), runs_root=teachers)``."""
    from helpers import tiny_spec

    from cmkd.harness.engine.trial import run_trial
    from cmkd.methods import teacher_method

    root = tmp_path_factory.mktemp("teachers")
    cross, multi = teacher_method("cross-modal"), teacher_method("multi-modal")
    run_trial(tiny_spec(method=cross.name, modality="rgb"), runs_root=root)
    run_trial(tiny_spec(method=multi.name, modality=None), runs_root=root)
    return root


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole suite (2 CPUs); drivers started by tests join it (--address auto)."""
    import ray

    from cmkd.harness.sweep.tune import WORKER_ENV

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=150 * 2**20, log_to_driver=False,
             runtime_env={"env_vars": WORKER_ENV})
    yield ray
    ray.shutdown()
