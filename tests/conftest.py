"""Shared fixtures."""

import pytest

import helpers  # noqa: F401  (sets the offline environment variables first)


@pytest.fixture
def runs(tmp_path):
    return tmp_path / "runs"


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole suite (2 CPUs); drivers started by tests join it (--address auto)."""
    import ray

    from cmkd.harness.sweep import WORKER_ENV

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=150 * 2**20, log_to_driver=False,
             runtime_env={"env_vars": WORKER_ENV})
    yield ray
    ray.shutdown()
