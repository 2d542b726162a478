"""Tiny synthetic data and a short protocol, so that the suite trains in minutes."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

from cmkd.harness.config import TrainConfig, TrialSpec  # noqa: E402

TINY_DATA = {"n_samples": 120, "image_size": 16}


def tiny_spec(method: str = "student", modality: str | None = "rgb", seed: int = 0, epochs: int = 2,
              **kw) -> TrialSpec:
    data_opts = {**TINY_DATA, **kw.pop("dataset_options", {})}
    train = TrainConfig(epochs=epochs, batch_size=kw.pop("batch_size", 32), threads=1, **kw.pop("train", {}))
    return TrialSpec(dataset="synthetic", method=method, seed=seed, modality=modality, dataset_options=data_opts,
                     train=train, **kw)


