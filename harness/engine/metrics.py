"""Metrics, from scikit-learn: weighted F1 (the paper's metric, in [0, 1]) and, at each output's best epoch,
the scores MST-Distill reports beside it: overall accuracy, average per-class accuracy (the mean of the
per-class recalls over the classes present in the test part: its ``AA``) and Cohen's kappa."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, confusion_matrix, f1_score


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(f1_score(y_true, y_pred, average="weighted", zero_division=0))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))


#: the scores recorded at each output's best epoch beside its test F1 (name in ``outputs`` -> what it is)
SCORES = {"test_accuracy": "accuracy", "test_avg_accuracy": "average per-class accuracy", "test_kappa": "Cohen's kappa"}


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, float | None]:
    """Accuracy, average per-class accuracy and Cohen's kappa of one prediction (None where undefined: kappa
    when chance agreement is 1, i.e. one class in both labels and predictions)."""
    import warnings

    with warnings.catch_warnings():  # sklearn warns where kappa is undefined; None says so instead
        warnings.simplefilter("ignore")
        kappa = float(cohen_kappa_score(y_true, y_pred, labels=list(range(n_classes))))
        avg = float(balanced_accuracy_score(y_true, y_pred))
    return {"test_accuracy": float(accuracy_score(y_true, y_pred)),
            "test_avg_accuracy": avg if np.isfinite(avg) else None,
            "test_kappa": kappa if np.isfinite(kappa) else None}
