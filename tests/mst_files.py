"""Files in MST-Distill's released layouts, written as its preprocessing writes them (dtypes, shapes, names), with
a per-sample level readable in every modality: sample i's values all sit near ``level[i]``, so a test can check
that the adapters keep the rows paired (and labels follow the level's class)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def levels(n: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(labels, level per sample): a class-dependent level plus a small per-sample offset."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    return labels, labels * 10.0 + rng.uniform(0, 5, n)


def write_avmnist(root: Path, n_train: int, n_test: int, seed: int = 0) -> np.ndarray:
    """``avmnist/`` with float32 images N x 784 and audio N x 112 x 112; returns the levels (train then test)."""
    labels, lv = levels(n_train + n_test, 10, seed)
    rng = np.random.default_rng(seed + 1)
    image = (lv[:, None] + rng.uniform(0, 1, (len(lv), 784))).astype(np.float32)
    audio = (lv[:, None, None] + rng.uniform(0, 1, (len(lv), 112, 112))).astype(np.float32)
    base = Path(root) / "avmnist"
    for sub in ("image", "audio"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for part, rows in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
        np.save(base / "image" / f"{part}_data.npy", image[rows])
        np.save(base / "audio" / f"{part}_data.npy", audio[rows])
        np.save(base / f"{part}_labels.npy", labels[rows].astype(np.int64))
    return lv


def write_ravdess(root: Path, n: int, frames: int = 15, side: int = 224, mfcc: tuple[int, int] = (15, 156),
                  seed: int = 0) -> np.ndarray:
    """``RAVDESS_preprocessed_npy/``: uint8 video N x T x 3 x H x W, float32 MFCCs N x 15 x 156, int64 labels."""
    labels, lv = levels(n, 8, seed)
    rng = np.random.default_rng(seed + 1)
    video = np.clip(lv[:, None, None, None, None] * 3 + rng.integers(0, 10, (n, frames, 3, side, side)), 0, 255)
    audio = (lv[:, None, None] + rng.uniform(0, 1, (n, *mfcc))).astype(np.float32)
    base = Path(root) / "RAVDESS_preprocessed_npy"
    base.mkdir(parents=True, exist_ok=True)
    np.save(base / "video_data.npy", video.astype(np.uint8))
    np.save(base / "audio_data.npy", audio)
    np.save(base / "label_data.npy", labels.astype(np.int64))
    return lv


def write_crisismmd(root: Path, n: int, dims: tuple[int, int] = (2048, 768), seed: int = 0) -> np.ndarray:
    """``CMMD-V2/CMMD_data.pth``: ``torch.save`` of a tuple of numpy arrays (float32 features, int64 labels)."""
    import torch

    labels, lv = levels(n, 8, seed)
    rng = np.random.default_rng(seed + 1)
    visual = (lv[:, None] + rng.normal(0, 1, (n, dims[0]))).astype(np.float32)
    text = (lv[:, None] + rng.normal(0, 1, (n, dims[1]))).astype(np.float32)
    base = Path(root) / "CMMD-V2"
    base.mkdir(parents=True, exist_ok=True)
    torch.save((visual, text, labels.astype(np.int64)), base / "CMMD_data.pth")
    return lv


def write_indices(path: Path, n: int, groups: int = 20, seed: int = 19980427) -> None:
    """An index CSV as MST-Distill's ``indices_gen.py`` writes one (its own arithmetic, written independently)."""
    import pandas as pd

    np.random.seed(seed)
    table = pd.DataFrame({f"group_{i}": np.random.permutation(n) for i in range(groups)})
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
