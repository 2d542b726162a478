import numpy as np
import pytest
from sklearn.utils import shuffle

from cmkd.datasets import get_dataset, make_split
from cmkd.datasets.splits import Split


@pytest.fixture(scope="module")
def labels():
    rng = np.random.default_rng(3)
    # imbalanced classes, like SUNRGBD
    return rng.permutation(np.repeat(np.arange(5), [150, 121, 62, 40, 11]))


@pytest.mark.parametrize("rep", [0, 1, 4])
def test_split_is_disjoint_and_covers_everything(labels, rep):
    s = make_split(labels, rep)
    parts = [set(s.train.tolist()), set(s.val.tolist()), set(s.test.tolist())]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert set().union(*parts) == set(range(len(labels)))


def test_split_is_stratified_70_10_20(labels):
    s = make_split(labels, 0)
    for c, n in zip(*np.unique(labels, return_counts=True)):
        assert (labels[s.train] == c).sum() == int(0.7 * n)
        assert (labels[s.val] == c).sum() == int(0.8 * n) - int(0.7 * n)
        assert (labels[s.test] == c).sum() == n - int(0.8 * n)


def test_split_follows_the_official_rule(labels):
    """Per class: sklearn shuffle with random_state 1000*r, then 70 / 10 / 20 by int() cut points."""
    r = 2
    s = make_split(labels, r)
    expected_train = []
    for c in np.unique(labels):
        idx = shuffle(np.where(labels == c)[0], random_state=1000 * r)
        expected_train.extend(idx[: int(0.7 * len(idx))])
    assert s.train.tolist() == expected_train


def test_split_is_deterministic_and_differs_across_repetitions(labels):
    a, b, c = make_split(labels, 1), make_split(labels, 1), make_split(labels, 2)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()


def test_split_round_trips_through_disk(labels, tmp_path):
    s = make_split(labels, 3)
    s.save(tmp_path / "split.npz")
    t = Split.load(tmp_path / "split.npz")
    assert t.fingerprint() == s.fingerprint() and t.repetition == 3


def test_synthetic_data_are_deterministic_and_shaped():
    a = get_dataset("synthetic", n_samples=60, image_size=16, n_modalities=3).load()
    b = get_dataset("synthetic", n_samples=60, image_size=16, n_modalities=3).load()
    assert a.channels() == {"rgb": 3, "depth": 1, "thermal": 1}
    assert a.modalities["rgb"].shape == (60, 3, 16, 16) and a.modalities["rgb"].dtype == np.float32
    for m in a.modalities:
        np.testing.assert_array_equal(a.modalities[m], b.modalities[m])
    assert a.rich == "rgb" and a.n_classes == 6
    c = get_dataset("synthetic", n_samples=60, image_size=16, seed=1).load()
    assert not np.array_equal(a.modalities["rgb"], c.modalities["rgb"])
