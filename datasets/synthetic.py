"""The built-in synthetic multi-modal data set: a real test bed for cross-modal distillation.

Every sample is a scene of class c drawn at a random position. Three kinds of signal:
- a *shared* class signal visible in every modality: a radial ring pattern whose frequency is
  set by the class (strong in the rich modality, weak in the others);
- a *modality-specific* class signal: a per-class colour in ``rgb`` (separates every class), a
  blob whose radius only separates pairs of classes in ``depth``, a hot-spot intensity that only
  separates classes modulo 3 in ``thermal``;
- *nuisance*: random position, a random intensity plane, a smooth random field, a per-sample gain
  and pixel noise.
So ``rgb`` (3 channels, the rich modality) is clearly more informative than ``depth`` (1 channel),
and part of what a depth model misses is knowable from rgb: what a cross-modal teacher can pass on.
All flips and rotations by 90 degrees keep the class: the augmentation does not destroy the signal.
"""

from __future__ import annotations

import numpy as np

from .base import MultiModalData
from .registry import DatasetAdapter, register_dataset

_CHANNELS = {"rgb": 3, "depth": 1, "thermal": 1}


@register_dataset("synthetic")
class SyntheticDataset(DatasetAdapter):
    label = "Synthetic"
    description = "built-in generated scenes: rgb (3 ch, rich) + depth (1 ch) [+ thermal (1 ch)]; no files needed"
    modalities = {"rgb": 3, "depth": 1}
    rich = "rgb"
    default_options = {
        "n_samples": 600,
        "image_size": 32,
        "n_classes": 6,
        "n_modalities": 2,
        "seed": 0,
        "noise": 0.6,
    }

    @property
    def class_names(self) -> list[str]:  # type: ignore[override]
        return [f"class_{c}" for c in range(int(self.options["n_classes"]))]

    def modality_channels(self) -> dict[str, int]:
        names = list(_CHANNELS)[: int(self.options["n_modalities"])]
        return {m: _CHANNELS[m] for m in names}

    def check(self) -> None:
        from cmkd.errors import UserError

        o = self.options
        if not 2 <= int(o["n_modalities"]) <= 3:
            raise UserError("synthetic: n_modalities must be 2 or 3")
        if int(o["n_classes"]) < 2:
            raise UserError("synthetic: n_classes must be at least 2")
        if int(o["image_size"]) < 8:
            raise UserError("synthetic: image_size must be at least 8 (ResNet-18 downsamples by 32)")
        if int(o["n_samples"]) < 11 * int(o["n_classes"]):
            raise UserError("synthetic: n_samples must be at least 11 per class so that every split part has samples "
                            "(the official split rule gives a class of 10 no validation row)")

    def load(self) -> MultiModalData:
        self.check()
        o = self.options
        modalities, labels = generate(
            int(o["n_samples"]), int(o["image_size"]), int(o["n_classes"]),
            int(o["n_modalities"]), int(o["seed"]), float(o["noise"]),
        )
        return MultiModalData(
            name="synthetic",
            modalities=modalities,
            labels=labels,
            class_names=self.class_names,
            rich="rgb",
            meta={"options": dict(o)},
        )


def generate_labels(n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 1])
    labels = np.arange(n) % k  # balanced classes
    rng.shuffle(labels)
    return labels.astype(np.int64)


def _smooth_field(rng: np.random.Generator, n: int, s: int) -> np.ndarray:
    """Low-frequency random field (4x4 noise upsampled bilinearly), one per sample."""
    coarse = rng.normal(size=(n, 4, 4))
    grid = np.linspace(0, 3, s)
    i0 = np.clip(np.floor(grid).astype(int), 0, 2)
    t = grid - i0
    rows = coarse[:, i0, :] * (1 - t)[None, :, None] + coarse[:, i0 + 1, :] * t[None, :, None]
    return rows[:, :, i0] * (1 - t)[None, None, :] + rows[:, :, i0 + 1] * t[None, None, :]


def generate(n: int, s: int, k: int, n_modalities: int, seed: int, noise: float):
    labels = generate_labels(n, k, seed)
    rng = np.random.default_rng([seed, 2])
    # class codes
    freqs = rng.permutation(np.linspace(1.0, 3.5, k))  # ring cycles across the image
    colors = rng.normal(size=(k, 3))
    colors /= np.linalg.norm(colors, axis=1, keepdims=True)
    radii = np.linspace(0.12, 0.35, (k + 1) // 2)[rng.permutation((k + 1) // 2)]
    heat = np.array([0.4, 1.0, 1.6])
    # per-sample nuisance
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    cx, cy = rng.uniform(0.3, 0.7, size=(2, n))
    r = np.sqrt((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2)
    ring = np.cos(2 * np.pi * freqs[labels][:, None, None] * r * 2) * np.exp(-((r / 0.5) ** 2))
    slope = rng.normal(scale=0.5, size=(n, 2))
    plane = slope[:, 0, None, None] * (xx[None] - 0.5) + slope[:, 1, None, None] * (yy[None] - 0.5)
    gain = rng.uniform(0.7, 1.3, size=(n, 1, 1))

    def nuisance() -> np.ndarray:
        return plane + 0.5 * _smooth_field(rng, n, s) + rng.normal(scale=noise, size=(n, s, s))

    out: dict[str, np.ndarray] = {}
    rgb = np.empty((n, 3, s, s), np.float32)
    for ch in range(3):
        rgb[:, ch] = gain * (0.9 * ring + 0.6 * colors[labels, ch][:, None, None]) + nuisance()
    out["rgb"] = rgb
    blob = np.exp(-((r / radii[labels // 2][:, None, None]) ** 2))
    out["depth"] = (gain * (0.35 * ring + 1.2 * blob) + nuisance())[:, None].astype(np.float32)
    if n_modalities >= 3:
        spot = np.exp(-((r / 0.15) ** 2)) * heat[labels % 3][:, None, None]
        out["thermal"] = (gain * (0.5 * ring + spot) + nuisance())[:, None].astype(np.float32)
    return out, labels
