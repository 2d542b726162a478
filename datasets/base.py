"""The one in-memory form every data-set adapter produces."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from cmkd.harness.errors import UserError


@dataclass
class MultiModalData:
    """Aligned per-modality arrays: row i of every modality is the same scene.

    ``modalities`` maps a modality name to a float32 array N x C x H x W. ``rich`` names the modality
    of the cross-modal teacher (the most informative one).
    """

    name: str
    modalities: dict[str, np.ndarray]
    labels: np.ndarray
    class_names: list[str]
    rich: str
    splits: dict[int, "object"] | None = None  # optional pre-made splits (official-code arrays)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.labels)
        if not self.modalities:
            raise UserError(f"data set {self.name!r} has no modality")
        for m, arr in self.modalities.items():
            if arr.ndim != 4:
                raise UserError(f"data set {self.name!r}, modality {m!r}: expected N x C x H x W, got shape {arr.shape}")
            if arr.shape[0] != n:
                raise UserError(
                    f"data set {self.name!r}, modality {m!r}: {arr.shape[0]} rows but {n} labels; "
                    "every modality needs one row per label"
                )
            if arr.dtype != np.float32:
                self.modalities[m] = arr.astype(np.float32)
        if self.rich not in self.modalities:
            raise UserError(f"data set {self.name!r}: rich modality {self.rich!r} is not among {list(self.modalities)}")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise UserError(f"data set {self.name!r}: labels must lie in 0..{len(self.class_names) - 1}")

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def channels(self) -> dict[str, int]:
        return {m: int(a.shape[1]) for m, a in self.modalities.items()}

    def image_size(self, modality: str) -> tuple[int, int]:
        a = self.modalities[modality]
        return int(a.shape[2]), int(a.shape[3])

    def fingerprint(self) -> str:
        """A short hash of labels and shapes: teachers and students must see the same data."""
        h = hashlib.sha256(self.labels.tobytes())
        for m in sorted(self.modalities):
            h.update(f"{m}:{self.modalities[m].shape}".encode())
        return h.hexdigest()[:16]
