"""Shared fixtures."""

import pytest

import helpers  # noqa: F401  (sets the offline environment variables first)


@pytest.fixture
def runs(tmp_path):
    return tmp_path / "runs"
