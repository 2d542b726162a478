"""The arrays the official DisCoM-KD code reads, loaded as they are (already normalised).

``<dir>/<PREFIX>_data_normalized.npy`` (N x C x H x W) per modality, ``<dir>/labels.npy`` and,
optionally, split index files: ``train_idx_<r>.npy`` / ``valid_idx_<r>.npy`` / ``test_idx_<r>.npy``
per repetition, or unnumbered ``train_idx.npy`` ... (used for every repetition, as the released code
does: the seed then only changes the initialisation). Without index files the official split rule
applies. So results can be compared with the official code on the very same arrays.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cmkd.errors import UserError

from .base import MultiModalData, integer_labels, read_npy
from .registry import DatasetAdapter, register_dataset
from .splits import Split


def official_files(root: Path, prefix: str) -> Path:
    return root / f"{prefix}_data_normalized.npy"


def has_official(root: str | Path | None, prefixes: list[str]) -> bool:
    return root is not None and all(official_files(Path(root), p).is_file() for p in prefixes) \
        and (Path(root) / "labels.npy").is_file()


FIX = "re-export the official-code arrays"


def read_official(root: str | Path, prefix_to_modality: dict[str, str], name: str, rich: str,
                  class_names: list[str] | None = None) -> MultiModalData:
    root = Path(root)
    labels_path = root / "labels.npy"
    labels = integer_labels(read_npy(labels_path, "official-code arrays need labels.npy"), labels_path, FIX)
    if len(labels) and labels.min() < 0:
        raise UserError(f"{labels_path}: labels must be >= 0; {FIX}")
    mods = {}
    for prefix, m in prefix_to_modality.items():
        path = official_files(root, prefix)
        arr = read_npy(path, f"expected {', '.join(official_files(root, p).name for p in prefix_to_modality)}",
                       mmap=True)
        if arr.ndim != 4 or arr.shape[0] != len(labels):
            raise UserError(f"{path}: expected N x C x H x W with N = {len(labels)} (labels.npy), got {arr.shape}")
        # float32 files stay memory-mapped (one copy per machine, in the page cache); others are converted
        mods[m] = arr if arr.dtype == np.float32 else np.array(arr, dtype=np.float32)
    names = _class_names(labels, class_names, labels_path)
    return MultiModalData(name=name, modalities=mods, labels=labels, class_names=names, rich=rich,
                          splits=read_official_splits(root, len(labels), labels), meta={"source": f"official arrays {root}",
                                                                                "options": {}})


def _class_names(labels: np.ndarray, declared: list[str] | None, path: Path) -> list[str]:
    """The data set's class names: the declared ones, which every label must index; without them, 0..K-1
    with every class present (a stray label must not become a class of its own, nor 2^40 of them)."""
    top = int(labels.max()) if len(labels) else -1
    if declared:
        if top >= len(declared):
            raise UserError(f"{path} holds label {top}, but this data set has {len(declared)} classes (0.."
                            f"{len(declared) - 1}); fix labels.npy")
        return list(declared)
    present = np.unique(labels)
    if len(present) != top + 1:
        missing = sorted(set(range(min(top + 1, 10**6))) - set(present.tolist()))[:5]
        raise UserError(f"{path}: labels run 0..{top} but {top + 1 - len(present)} of those classes have no row "
                        f"(e.g. {', '.join(map(str, missing))}); number the classes 0..K-1 with no gap; {FIX}")
    return [f"class_{c}" for c in range(top + 1)]


def read_official_splits(root: Path, n: int, labels: np.ndarray | None = None) -> dict[int, Split] | None:
    def load(path: Path) -> np.ndarray:
        idx = integer_labels(read_npy(path, "re-create the split index files"), path, "re-create the split index files")
        if len(idx) == 0:
            raise UserError(f"{path} is empty: every repetition needs train, validation and test rows; re-create "
                            "the split files (or remove all *_idx*.npy files to use the official split rule)")
        if idx.min() < 0 or idx.max() >= n:
            raise UserError(f"{path}: row indices outside 0..{n - 1}")
        return idx

    splits: dict[int, Split] = {}
    reps = sorted({int(m.group(1)) for p in root.glob("*_idx_*.npy")
                   if (m := re.fullmatch(r"(?:train|valid|test)_idx_(\d+)\.npy", p.name))})
    for r in reps:
        parts = [root / f"{kind}_idx_{r}.npy" for kind in ("train", "valid", "test")]
        missing = [p.name for p in parts if not p.is_file()]
        if missing:
            raise UserError(f"{root}: split files for repetition {r} are incomplete, missing {', '.join(missing)}")
        splits[r] = Split(*(load(p) for p in parts), repetition=r)
    plain = [root / f"{kind}_idx.npy" for kind in ("train", "valid", "test")]
    if all(p.is_file() for p in plain):
        single = [load(p) for p in plain]
        for r in range(10):
            splits.setdefault(r, Split(*single, repetition=r))
    for r, s in splits.items():
        train, val, test = (set(part.tolist()) for part in (s.train, s.val, s.test))
        for a, b, what in ((test, train | val, "test rows also appear in train or validation"),
                           (train, val, "train and validation rows overlap")):
            if a & b:
                raise UserError(f"{root}: repetition {r}: {what} ({len(a & b)} rows, e.g. row {min(a & b)}); "
                                "fix the split index files")
        if labels is not None:  # a class the model never trains on would still be scored on test
            unseen = sorted(set(np.unique(labels).tolist()) - set(np.unique(labels[s.train]).tolist()))
            if unseen:
                raise UserError(f"{root}: repetition {r}: class {unseen[0]} has no training row in the split index "
                                f"files ({len(unseen)} class(es) without one); fix the split index files")
    return splits or None


@register_dataset("official-arrays")
class OfficialArrays(DatasetAdapter):
    description = "any data set as the official DisCoM-KD code stores it: <PREFIX>_data_normalized.npy + labels.npy"
    default_options = {"prefixes": "RGB,DEPTH"}
    rich = ""

    def _prefixes(self) -> list[str]:
        return [p.strip() for p in str(self.options["prefixes"]).split(",") if p.strip()]

    def modality_channels(self) -> dict[str, int]:
        if not self.found():
            return {p.lower(): 0 for p in self._prefixes()}
        return {p.lower(): int(np.load(official_files(Path(self.root), p), mmap_mode="r").shape[1]) for p in self._prefixes()}

    def found(self) -> bool:
        return has_official(self.root, self._prefixes())

    def check(self) -> None:
        if self.root is None:
            raise UserError("official-arrays needs --root DIR holding <PREFIX>_data_normalized.npy and labels.npy")
        if not Path(self.root).is_dir():
            raise UserError(f"data root {self.root} does not exist")
        if len(self._prefixes()) < 2:
            raise UserError("official-arrays needs --data-opt prefixes=A,B (at least two modality prefixes; the first is the rich one)")
        names = [p.lower() for p in self._prefixes()]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UserError(f"official-arrays: prefix {twice[0].upper()!r} is listed twice in prefixes="
                            f"{self.options['prefixes']}; name each modality once")

    def load(self) -> MultiModalData:
        self.check()
        prefixes = self._prefixes()
        return read_official(self.root, {p: p.lower() for p in prefixes}, "official-arrays", prefixes[0].lower())
