"""Metrics: weighted F1 from scikit-learn (the paper's metric), in [0, 1]."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(f1_score(y_true, y_pred, average="weighted", zero_division=0))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))
