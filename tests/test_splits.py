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


def test_split_is_stratified_by_the_official_arithmetic(labels):
    """createSplits.py: train up to int(n * 0.7), validation up to int(n * (0.7 + 0.1)), i.e. 0.7999999999999999."""
    s = make_split(labels, 0)
    for c, n in zip(*np.unique(labels, return_counts=True)):
        assert (labels[s.train] == c).sum() == int(n * 0.7)
        assert (labels[s.val] == c).sum() == int(n * (0.7 + 0.1)) - int(n * 0.7)
        assert (labels[s.test] == c).sum() == n - int(n * (0.7 + 0.1))


# (class size, official train/val/test, exact-0.8 train/val/test): the official cut often loses one validation
# row to the test part (5, 10, 70, 2000, 2500; not 3000, where n * 0.7999999999999999 rounds to 2400.0)
SIZES = [(5, (3, 0, 2), (3, 1, 1)), (10, (7, 0, 3), (7, 1, 2)), (70, (49, 6, 15), (49, 7, 14)),
         (2000, (1400, 199, 401), (1400, 200, 400)), (2500, (1750, 249, 501), (1750, 250, 500)),
         (11, (7, 1, 3), (7, 1, 3))]


@pytest.mark.parametrize("n, official, exact", SIZES)
def test_split_counts_per_rule(n, official, exact):
    labels = np.zeros(n, dtype=np.int64)
    for rule, expected in (("official", official), ("exact", exact)):
        s = make_split(labels, 1, rule)
        assert (len(s.train), len(s.val), len(s.test)) == expected, rule


def test_quick_profile_and_real_data_set_sizes_follow_the_official_rule():
    quick = np.repeat(np.arange(6), 70)  # an earlier quick profile: 420 samples, 6 balanced classes
    assert (len(make_split(quick, 0).val), len(make_split(quick, 0).test)) == (36, 90)
    assert (len(make_split(quick, 0, "exact").val), len(make_split(quick, 0, "exact").test)) == (42, 84)
    eurosat = np.repeat(np.arange(10), [3000, 3000, 3000, 2500, 2500, 2000, 2500, 3000, 2500, 3000])
    s = make_split(eurosat, 0)
    assert (len(s.val), len(s.test)) == (2695, 5405)


def test_ten_per_class_gives_an_empty_validation_part_and_the_error_says_why(capsys, tmp_path):
    from cmkd.harness.cli.main import main

    code = main(["train", "--method", "student", "--dataset", "official-arrays", "--root", str(_ten_per_class(tmp_path)),
                 "--data-opt", "prefixes=RGB,DEPTH", "--modality", "rgb", "--epochs", "1", "--runs", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "empty validation part" in err and "0.7999999999999999" in err and "class 0 (10 samples)" in err
    assert not (tmp_path / "r").exists()


def _ten_per_class(tmp_path):
    root = tmp_path / "arrays"
    root.mkdir()
    np.save(root / "RGB_data_normalized.npy", np.zeros((20, 3, 16, 16), np.float32))
    np.save(root / "DEPTH_data_normalized.npy", np.zeros((20, 1, 16, 16), np.float32))
    np.save(root / "labels.npy", np.repeat([0, 1], 10))
    return root


def test_no_class_size_beyond_ten_loses_a_part():
    from cmkd.datasets.splits import empty_parts

    assert empty_parts(np.repeat([0], 10)) == ["class 0 (10 samples) gets no validation row"]
    assert all(not empty_parts(np.zeros(n, np.int64)) for n in range(11, 5000))


def test_a_seed_whose_split_seed_overflows_is_refused():
    from cmkd.errors import UserError
    from cmkd.harness.engine.spec import TrialSpec

    with pytest.raises(UserError, match="32-bit"):
        TrialSpec(dataset="synthetic", method="student", seed=99_999_999)


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
    a = get_dataset("synthetic", n_samples=66, image_size=16, n_modalities=3).load()
    b = get_dataset("synthetic", n_samples=66, image_size=16, n_modalities=3).load()
    assert a.channels() == {"rgb": 3, "depth": 1, "thermal": 1}
    assert a.modalities["rgb"].shape == (66, 3, 16, 16) and a.modalities["rgb"].dtype == np.float32
    for m in a.modalities:
        np.testing.assert_array_equal(a.modalities[m], b.modalities[m])
    assert a.rich == "rgb" and a.n_classes == 6
    c = get_dataset("synthetic", n_samples=66, image_size=16, seed=1).load()
    assert not np.array_equal(a.modalities["rgb"], c.modalities["rgb"])
