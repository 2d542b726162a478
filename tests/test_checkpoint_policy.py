"""The resume-checkpoint policy: when a checkpoint is due (the exactness of resuming from one is in
test_engine.py; what writing costs is measured by benchmarks/trial_overhead.py)."""

from __future__ import annotations

import pytest
import torch

from cmkd.errors import UserError
from cmkd.harness.engine.checkpoint import ASSUMED_BYTES_PER_S, CheckpointPolicy, state_bytes
from cmkd.harness.engine.spec import TrainConfig


def test_the_budget_spaces_checkpoints_by_the_last_measured_write():
    policy = CheckpointPolicy(budget=0.05, write_s=0.5)  # a 0.5 s write is due after 10 s of training
    assert [policy.due(e, 100, 3.0) for e in range(1, 5)] == [False, False, False, True]
    policy.timed_write(lambda: None)
    policy.write_s = 2.0  # a slower disk: 40 s of training between writes
    assert [policy.due(e, 100, 10.0) for e in range(5, 9)] == [False, False, False, True]
    assert len(policy.written_s) == 1


def test_every_n_epochs_without_a_budget_and_never_at_the_last_epoch():
    policy = CheckpointPolicy(every=2, budget=0.0, write_s=1e9)
    assert [e for e in range(1, 8) if policy.due(e, 7, 1.0)] == [2, 4, 6]
    cheap = CheckpointPolicy(budget=0.05, write_s=0.0)  # due after every epoch but the last
    assert [e for e in range(1, 4) if cheap.due(e, 3, 1.0)] == [1, 2]
    assert not any(CheckpointPolicy(every=0, budget=0.0).due(e, 9, 100.0) for e in range(1, 10))


def test_the_first_write_is_estimated_from_the_state_size():
    net = torch.nn.Linear(1000, 1000)
    nbytes = state_bytes(net.state_dict(), {"nested": [torch.zeros(10)]})
    assert nbytes == (1000 * 1000 + 1000 + 10) * 4
    policy = CheckpointPolicy.for_state(0, 0.05, nbytes)
    assert policy.write_s == pytest.approx(nbytes / ASSUMED_BYTES_PER_S)


@pytest.mark.parametrize("field,value,needle", [("checkpoint_every", -1, "checkpoint_every must be >= 0"),
                                                ("checkpoint_budget", 1.0, "checkpoint_budget is a share"),
                                                ("checkpoint_budget", -0.1, "checkpoint_budget is a share")])
def test_bad_policy_values_are_refused(field, value, needle):
    with pytest.raises(UserError, match=needle):
        TrainConfig(**{field: value})


def test_the_policy_is_not_part_of_a_trials_identity():
    from helpers import tiny_spec

    spec = tiny_spec()
    other = spec.replace(train=TrainConfig(**{**spec.train.__dict__, "checkpoint_every": 3, "checkpoint_budget": 0.2}))
    assert spec.trial_id() == other.trial_id()


def test_the_policy_is_not_part_of_a_benchmarks_identity():
    from cmkd.harness.sweep.bench_config import load_config

    base = load_config("smoke")
    other = load_config("smoke", overrides=["train.checkpoint_every=1", "train.checkpoint_budget=0.2"])
    assert base.config_hash() == other.config_hash()
    assert load_config("smoke", overrides=["train.compile=true"]).config_hash() != base.config_hash()
