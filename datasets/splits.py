"""The split rule of the official DisCoM-KD code (``createSplits.py``), one split per repetition.

Per class: shuffle that class's row indices with scikit-learn's ``shuffle(random_state=1000 * r)``;
the first ``int(0.7 n_c)`` rows train, up to ``int(0.8 n_c)`` validate, the rest test. A split is a
function of (labels, repetition) only, so a teacher and its students share it by construction; it
is saved next to every trial and checked by fingerprint when a student loads its teacher.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.utils import shuffle

TRAIN_FRACTION = 0.7
VAL_END_FRACTION = 0.8


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    repetition: int

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for part in (self.train, self.val, self.test):
            h.update(np.asarray(part, dtype=np.int64).tobytes())
            h.update(b"|")
        return h.hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, train=self.train, val=self.val, test=self.test, repetition=self.repetition)
        tmp.replace(path)
        path.with_suffix(".json").write_text(
            json.dumps(
                {
                    "repetition": self.repetition,
                    "fingerprint": self.fingerprint(),
                    "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
                },
                indent=2,
            )
        )

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        z = np.load(path)
        return cls(z["train"], z["val"], z["test"], int(z["repetition"]))


def make_split(labels: np.ndarray, repetition: int) -> Split:
    """Stratified 70/10/20 split for repetition ``repetition`` (seed ``1000 * repetition``)."""
    labels = np.asarray(labels)
    train, val, test = [], [], []
    for c in np.unique(labels):
        idx = shuffle(np.flatnonzero(labels == c), random_state=1000 * repetition)
        n = len(idx)
        a, b = int(TRAIN_FRACTION * n), int(VAL_END_FRACTION * n)
        train.append(idx[:a])
        val.append(idx[a:b])
        test.append(idx[b:])
    cat = lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)  # noqa: E731
    return Split(cat(train), cat(val), cat(test), repetition)
