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

The ``shared`` knob (0..1; unset = the original mix above, bit for bit) sets how much of the class
signal that decides ``rgb`` is also present in ``depth``, after the modality focusing hypothesis (Xue
et al., ICLR 2023: cross-modal KD helps when the teacher's decisive features are modality-general):
rgb carries the ring at ``RGB_RING * shared`` and its colour at ``RGB_COLOUR * (1 - shared)``; depth
carries the same ring at ``DEPTH_RING * shared`` beside its own blob, and a level of its own that tells
apart the two classes of a blob pair at ``DEPTH_OWN * (1 - shared)``. At 1 the rgb teacher decides by a
signal depth also shows; at 0 each modality is decided by a signal of its own (rgb by colour, depth by
its blob and level), the hypothesis's modality-specific case. In the
knob's data each sample's ring frequency also varies within its class's band (``FREQ_JITTER`` of the
spacing between classes): as in the hypothesis's Gaussian experiment, where labels threshold a
continuous latent, the teacher's soft outputs then carry where a sample lies, information a student
can use only if it sees that latent. Measured (``benchmarks/controls.py``, the README): logit KD beats
STUDENT on depth at ``shared=1`` and does not at ``shared=0``.
"""

from __future__ import annotations

import numpy as np

from .base import MultiModalData
from .registry import DatasetAdapter, register_dataset

_CHANNELS = {"rgb": 3, "depth": 1, "thermal": 1}
# the knob's amplitudes (``shared`` set): rgb's ring and colour, depth's ring at shared = 1, depth's
# blob; the within-class spread of the ring frequency (a fraction of the spacing between classes).
# Chosen so that the regimes differ only in where the teacher's decisive signal lies: in the quick profile
# the rgb teacher is as good in both (94.3 and 93.6% F1, 10 seeds) and so is the depth STUDENT (55.0 and
# 57.4%; commit and machine in docs/benchmark.md)
RGB_RING, RGB_COLOUR, DEPTH_RING, DEPTH_BLOB = 2.5, 4.0, 0.8, 1.2
FREQ_JITTER = 0.3
#: depth's own within-pair signal at ``shared = 0``: a level of +/- this (times the sample's gain), the sign set by
#: the class within its blob pair
DEPTH_OWN = 0.3


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
        "shared": None,
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
        if self.root is not None:
            raise UserError(f"synthetic data are generated and read no files: drop --root {self.root} (or the data "
                            "set's root in the config)")
        if not 2 <= int(o["n_modalities"]) <= 3:
            raise UserError("synthetic: n_modalities must be 2 or 3")
        if int(o["n_classes"]) < 2:
            raise UserError("synthetic: n_classes must be at least 2")
        if int(o["image_size"]) < 8:
            raise UserError("synthetic: image_size must be at least 8 (ResNet-18 downsamples by 32)")
        share = o["shared"]
        if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1):
            raise UserError(f"synthetic: shared must be a number from 0 to 1 (got {o['shared']!r}), or left unset for "
                            "the original mix")
        if not 0 <= int(o["seed"]) < 2**32:
            raise UserError(f"synthetic: seed must lie in 0..{2**32 - 1}, got {o['seed']}")
        if not 0 <= float(o["noise"]) <= 100:
            raise UserError(f"synthetic: noise must lie in 0..100 (the pixel noise's standard deviation), got {o['noise']}")
        if int(o["image_size"]) > 512:
            raise UserError(f"synthetic: image_size must be at most 512, got {o['image_size']}")
        size = int(o["n_samples"]) * int(o["image_size"]) ** 2 * (3 + int(o["n_modalities"]) - 1) * 4
        if size > 16 * 2**30:
            raise UserError(f"synthetic: n_samples = {o['n_samples']} at {o['image_size']} px would take "
                            f"{size / 2**30:.0f} GiB of memory (at most 16); lower n_samples or image_size")
        if int(o["n_samples"]) < 11 * int(o["n_classes"]):
            raise UserError("synthetic: n_samples must be at least 11 per class so that every split part has samples "
                            "(the official split rule gives a class of 10 no validation row)")

    def load(self) -> MultiModalData:
        self.check()
        o = self.options
        modalities, labels = generate(
            int(o["n_samples"]), int(o["image_size"]), int(o["n_classes"]),
            int(o["n_modalities"]), int(o["seed"]), float(o["noise"]),
            None if o["shared"] is None else float(o["shared"]),
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


def generate(n: int, s: int, k: int, n_modalities: int, seed: int, noise: float, shared: float | None = None):
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
    f = freqs[labels]
    if shared is not None and FREQ_JITTER > 0:  # the knob: a continuous frequency within each class's band
        step = (3.5 - 1.0) / max(k - 1, 1)
        f = f + np.random.default_rng([seed, 3]).uniform(-FREQ_JITTER, FREQ_JITTER, size=n) * step
    ring = np.cos(2 * np.pi * f[:, None, None] * r * 2) * np.exp(-((r / 0.5) ** 2))
    slope = rng.normal(scale=0.5, size=(n, 2))
    plane = slope[:, 0, None, None] * (xx[None] - 0.5) + slope[:, 1, None, None] * (yy[None] - 0.5)
    gain = rng.uniform(0.7, 1.3, size=(n, 1, 1))

    def nuisance() -> np.ndarray:
        return plane + 0.5 * _smooth_field(rng, n, s) + rng.normal(scale=noise, size=(n, s, s))

    out: dict[str, np.ndarray] = {}
    # amplitudes: the original mix, or the knob (rgb's class signal split between the ring, which
    # depth also shows, and the colour, which only rgb has)
    if shared is None:
        rgb_ring, rgb_colour, depth_ring = 0.9, 0.6, 0.35
    else:
        rgb_ring, rgb_colour, depth_ring = RGB_RING * shared, RGB_COLOUR * (1 - shared), DEPTH_RING * shared
    rgb = np.empty((n, 3, s, s), np.float32)
    for ch in range(3):
        rgb[:, ch] = gain * (rgb_ring * ring + rgb_colour * colors[labels, ch][:, None, None]) + nuisance()
    out["rgb"] = rgb
    blob = np.exp(-((r / radii[labels // 2][:, None, None]) ** 2))
    depth_blob = 1.2 if shared is None else DEPTH_BLOB
    depth = depth_ring * ring + depth_blob * blob
    if shared is not None:  # depth's own within-pair signal, at (1 - shared): a class-dependent level
        depth = depth + DEPTH_OWN * (1 - shared) * (2.0 * (labels % 2) - 1)[:, None, None]
    out["depth"] = (gain * depth + nuisance())[:, None].astype(np.float32)
    if n_modalities >= 3:
        spot = np.exp(-((r / 0.15) ** 2)) * heat[labels % 3][:, None, None]
        out["thermal"] = (gain * (0.5 * ring + spot) + nuisance())[:, None].astype(np.float32)
    return out, labels
