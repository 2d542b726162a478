"""The split rule of the official DisCoM-KD code (``createSplits.py``), one split per repetition.

Per class: shuffle that class's row indices with scikit-learn's ``shuffle(random_state=1000 * r)``;
the first ``int(n_c * 0.7)`` rows train, the rows up to the validation cut validate, the rest test.

The validation cut is where the released code and the paper's "70/10/20" part ways: the code
computes it as ``int(n_c * (0.7 + 0.1))``, and ``0.7 + 0.1`` is 0.7999999999999999 in floating
point, so for many class sizes (5, 10, 70, 2000, 2500, but not 3000, where the product rounds to
2400.0) the validation part has one row fewer (and the test part one more) than ``int(0.8 n_c)``. ``official`` (the default) reproduces the code's
arithmetic exactly (what produced the paper's numbers); ``exact`` cuts at ``int(0.8 n_c)``.

A split is a function of (labels, repetition, rule) only, so a teacher and its students share it by
construction; it is saved next to every trial and checked by fingerprint when a student loads its
teacher.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAIN_PERC = 0.7
VALID_PERC = 0.1
#: the validation cut per rule, as a fraction of a class's size
SPLIT_RULES = {"official": TRAIN_PERC + VALID_PERC, "exact": 0.8}
#: ``shuffle(random_state=...)`` takes a 32-bit seed: 1000 * r must stay below 2**32
MAX_REPETITION = (2**32 - 1) // 1000


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


def cut_points(n: int, rule: str = "official") -> tuple[int, int]:
    """(end of train, end of validation) for a class of ``n`` rows under ``rule``."""
    if rule not in SPLIT_RULES:
        raise ValueError(f"split rule must be one of {', '.join(SPLIT_RULES)}, got {rule!r}")
    return int(n * TRAIN_PERC), int(n * SPLIT_RULES[rule])


def make_split(labels: np.ndarray, repetition: int, rule: str = "official") -> Split:
    from sklearn.utils import shuffle  # here: a decoding worker of cmkd prepare imports this package, not sklearn

    """Stratified 70/10/20 split for repetition ``repetition`` (seed ``1000 * repetition``)."""
    if not 0 <= int(repetition) <= MAX_REPETITION:
        raise ValueError(f"repetition must lie in 0..{MAX_REPETITION} (the split seed 1000 * r is a 32-bit integer)")
    labels = np.asarray(labels)
    train, val, test = [], [], []
    for c in np.unique(labels):
        idx = shuffle(np.flatnonzero(labels == c), random_state=1000 * repetition)
        a, b = cut_points(len(idx), rule)
        train.append(idx[:a])
        val.append(idx[a:b])
        test.append(idx[b:])
    cat = lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)  # noqa: E731
    return Split(cat(train), cat(val), cat(test), repetition)


def empty_parts(labels: np.ndarray, rule: str = "official") -> list[str]:
    """Human-readable reasons why some class gets no row in a part under ``rule`` ([] when none)."""
    out = []
    for c, n in zip(*np.unique(np.asarray(labels), return_counts=True)):
        a, b = cut_points(int(n), rule)
        for part, size in (("train", a), ("validation", b - a), ("test", int(n) - b)):
            if size == 0:
                out.append(f"class {c} ({n} samples) gets no {part} row")
    return out


#: codes of a data set's published split, one per row (``MultiModalData.published``)
TRAIN, VAL, TEST, UNLISTED = 0, 1, 2, -1
#: validation carved from a published train part that has none: the paper's 10 : 70 ratio, per class
CARVE_FRACTION = VALID_PERC / (TRAIN_PERC + VALID_PERC)


def published_split(part: np.ndarray, labels: np.ndarray, repetition: int,
                    groups: np.ndarray | None = None) -> Split:
    """The split a data set publishes (``part``: TRAIN / VAL / TEST / UNLISTED per row), the same for
    every repetition. Without a published validation part, validation is carved from train per class
    (shuffled with ``random_state=1000 * r`` as the paper's rule; 1/8 of the class's train rows, the
    paper's 10 : 70), by whole groups when ``groups`` is given (no group on both sides)."""
    part = np.asarray(part)
    labels = np.asarray(labels)
    train = np.flatnonzero(part == TRAIN)
    val = np.flatnonzero(part == VAL)
    test = np.flatnonzero(part == TEST)
    if len(val) == 0 and len(train):
        from sklearn.utils import shuffle

        keep, carved = [], []
        for c in np.unique(labels[train]):
            rows = train[labels[train] == c]
            units = np.unique(groups[rows]) if groups is not None else rows
            units = shuffle(units, random_state=1000 * repetition)
            n_val = int(len(units) * CARVE_FRACTION)
            chosen = np.isin(groups[rows], units[:n_val]) if groups is not None else np.isin(rows, units[:n_val])
            carved.append(rows[chosen])
            keep.append(rows[~chosen])
        train = np.sort(np.concatenate(keep)).astype(np.int64)
        val = np.sort(np.concatenate(carved)).astype(np.int64)
    return Split(train.astype(np.int64), val.astype(np.int64), test.astype(np.int64), repetition)


# ---- a data set's own per-repetition permutations (MST-Distill's metadata/<NAME>_indices.csv) -------------------
#: ``indices_gen.py``'s seed and group count
MST_SEED, MST_GROUPS = 19980427, 20


def mst_split(order: np.ndarray, repetition: int) -> Split:
    """MST-Distill's ``get_indices``: 60/20/20 cuts of one permutation, computed as its code computes them."""
    n = len(order)
    a, b = int(n * 0.6), int(n * 0.8)
    return Split(np.asarray(order[:a], np.int64), np.asarray(order[a:b], np.int64), np.asarray(order[b:], np.int64),
                 repetition)


class PermutationSplits(Mapping):
    """Repetition r -> :func:`mst_split` of permutation r: read from an index CSV's ``group_r`` columns, or
    regenerated (``generated``: then every repetition exists, the first 20 being ``indices_gen.py``'s)."""

    def __init__(self, n: int, columns: list[np.ndarray] | None = None) -> None:
        self.n, self.columns = n, columns
        self._cache: dict[int, Split] = {}

    @property
    def generated(self) -> bool:
        return self.columns is None

    def __getitem__(self, r: int) -> Split:
        if r not in self:
            raise KeyError(r)
        if r not in self._cache:
            if self.columns is not None:
                order = self.columns[r]
            else:
                rng = np.random.RandomState(MST_SEED)  # the legacy global generator np.random.seed seeds
                for _ in range(r + 1):
                    order = rng.permutation(self.n)
            self._cache[r] = mst_split(order, r)
        return self._cache[r]

    def __contains__(self, r: object) -> bool:
        return isinstance(r, (int, np.integer)) and 0 <= int(r) and (self.generated or int(r) < len(self.columns))

    def __iter__(self) -> Iterator[int]:
        return iter(range(MST_GROUPS if self.columns is None else len(self.columns)))

    def __len__(self) -> int:
        return MST_GROUPS if self.columns is None else len(self.columns)
