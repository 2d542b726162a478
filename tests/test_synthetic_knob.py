"""The synthetic data set's ``shared`` knob produces the signal structure it documents.

A linear probe on a translation-invariant view (the magnitude of the 2-D Fourier transform, DC term
removed, so a constant colour is invisible) reads the ring; the per-channel mean reads the colour.
At ``shared=1`` depth shows the ring that decides rgb (the probe tells apart the two classes that share
a blob radius, which only the ring can), at ``shared=0`` it does not, and each modality is then decided
by a signal of its own: rgb by its colour, depth (within a blob pair) by its level.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cmkd.datasets import get_dataset
from cmkd.errors import UserError


def _ring_view(x: np.ndarray) -> np.ndarray:
    mag = np.abs(np.fft.fft2(x)).mean(1)
    mag[:, 0, 0] = 0
    return np.log1p(mag).reshape(len(x), -1)


def _probe(features: np.ndarray, target: np.ndarray) -> float:
    n = int(0.7 * len(target))
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1)).fit(features[:n], target[:n])
    return clf.score(features[n:], target[n:])


@pytest.fixture(scope="module")
def regimes():
    return {s: get_dataset("synthetic", n_samples=1200, image_size=16, shared=s).load() for s in (0.0, 1.0)}


def test_at_share_one_depth_shows_the_ring_that_decides_rgb(regimes):
    d = regimes[1.0]
    y = d.labels
    assert _probe(_ring_view(d.modalities["rgb"]), y) > 0.9  # rgb is decided by the ring...
    assert _probe(d.modalities["rgb"].mean((2, 3)), y) < 0.4  # ...not by its colour (chance 1/6)
    assert _probe(_ring_view(d.modalities["depth"]), y % 2) > 0.75  # depth sees it (within a blob pair)


def test_at_share_zero_rgb_is_decided_by_what_depth_cannot_see(regimes):
    d = regimes[0.0]
    y = d.labels
    assert _probe(d.modalities["rgb"].mean((2, 3)), y) > 0.75  # rgb is decided by colour
    assert _probe(_ring_view(d.modalities["rgb"]), y) < 0.3  # no ring left in rgb
    assert _probe(_ring_view(d.modalities["depth"]), y % 2) < 0.6  # depth shows no ring...
    assert _probe(d.modalities["depth"].mean((1, 2, 3))[:, None], y % 2) > 0.65  # ...its own level decides


def test_depths_own_level_is_absent_where_the_signal_is_shared(regimes):
    assert _probe(regimes[1.0].modalities["depth"].mean((1, 2, 3))[:, None], regimes[1.0].labels % 2) < 0.6


def test_the_shared_regime_is_the_data_it_was_before_depths_own_level():
    # content fingerprint at shared = 1 before DEPTH_OWN existed (commit 08a7a11): the default benchmark's
    # shared column and every earlier result on it stand
    assert get_dataset("synthetic", n_samples=120, image_size=16, shared=1.0).load().fingerprint() == \
        "3f81ea4920af59d7fb8bfb96922e9fab"


def test_unset_share_is_the_original_data_bit_for_bit():
    # content fingerprints of the generator before the knob existed (commit 67f3721)
    assert get_dataset("synthetic", n_samples=120, image_size=16).load().fingerprint() == "f664a924d0bccc998ed15f8d907ac3ab"
    assert get_dataset("synthetic").load().fingerprint() == "4da46d66f30a8e4092533f3bcd1fba67"


@pytest.mark.parametrize("bad", [1.5, -0.1, "half", True])
def test_bad_share_is_refused(bad):
    with pytest.raises(UserError, match="shared must be a number from 0 to 1"):
        get_dataset("synthetic", n_samples=120, image_size=16, shared=bad).check()
