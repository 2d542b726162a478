"""The scores MST-Distill reports beside weighted F1 (accuracy, average per-class accuracy, Cohen's kappa),
checked against closed forms on the confusion matrix, not against the scikit-learn calls that make them."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny_spec

from cmkd.harness.engine.metrics import scores
from cmkd.harness.engine.trial import run_trial


def closed_forms(cm: np.ndarray) -> dict[str, float]:
    """Overall accuracy, the mean recall over the classes present in the labels (MST-Distill's ``AA``) and
    Cohen's kappa (p_o - p_e) / (1 - p_e), from a confusion matrix (rows: labels, columns: predictions)."""
    cm = np.asarray(cm, dtype=float)
    n = cm.sum()
    present = cm.sum(1) > 0
    po = np.trace(cm) / n
    pe = float((cm.sum(1) * cm.sum(0)).sum()) / n**2
    return {"test_accuracy": po, "test_avg_accuracy": float(np.mean(np.diag(cm)[present] / cm.sum(1)[present])),
            "test_kappa": (po - pe) / (1 - pe)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_match_their_closed_forms(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, 300)
    y[y == 4] = 3  # class 4 has no sample: left out of the average accuracy, as MST-Distill's AA skips it
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 5, 300))
    cm = np.zeros((5, 5))
    np.add.at(cm, (y, pred), 1)
    got, want = scores(y, pred, 5), closed_forms(cm)
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=1e-12), name


def test_kappa_is_none_where_it_is_undefined():
    y = np.zeros(10, dtype=int)
    assert scores(y, y, 3) == {"test_accuracy": 1.0, "test_avg_accuracy": 1.0, "test_kappa": None}


def test_a_trial_records_them_at_its_best_epoch(runs):
    result = run_trial(tiny_spec(epochs=2), runs_root=runs)
    out = result.outputs["rgb"]
    want = closed_forms(out["confusion"])  # the test confusion matrix of the same (best validation) epoch
    for name, value in want.items():
        assert out[name] == pytest.approx(value, abs=1e-12), name
