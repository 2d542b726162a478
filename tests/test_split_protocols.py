"""Split protocols on the real-layout fixtures: ``split = "paper"`` (the per-class rule) and
``split = "published"`` (TRISTAR's recordings, SUN RGB-D's toolbox train/test), refused where none exists."""

from __future__ import annotations

import numpy as np
import pytest
from real_fixtures import write_eurosat, write_sunrgbd, write_tristar
from scipy.io import savemat

from cmkd.datasets import get_dataset
from cmkd.datasets.splits import CARVE_FRACTION, published_split
from cmkd.errors import UserError
from cmkd.harness.cli.main import main
from cmkd.harness.engine.data import split_for


def _parts(split) -> list[set[int]]:
    return [set(split.train.tolist()), set(split.val.tolist()), set(split.test.tolist())]


def test_tristar_published_split_keeps_whole_recordings(tmp_path):
    write_tristar(tmp_path, shots_per_split=3, frames=9)
    adapter = get_dataset("tristar", root=str(tmp_path), image_size=16)
    frames = adapter.frames_with_origin()
    data = adapter.load()
    folder_of = np.array([f[2] for f in frames])
    shot_of = np.array([f[3] for f in frames])
    np.testing.assert_array_equal(data.published, folder_of)
    np.testing.assert_array_equal(data.groups, shot_of)
    split = split_for(data, 0, protocol="published")
    train, val, test = _parts(split)
    # each part is exactly the frames of TRISTAR's own folder of that name
    for part, code in ((train, 0), (val, 1), (test, 2)):
        assert part == set(np.flatnonzero(folder_of == code).tolist()) and part
    # no recording on two sides
    shots = [set(shot_of[sorted(p)].tolist()) for p in (train, val, test)]
    assert not (shots[0] & shots[1]) and not (shots[0] & shots[2]) and not (shots[1] & shots[2])
    # the published split is the same for every repetition; the paper's rule differs by repetition and
    # puts frames of one recording on both sides (the leak the published protocol avoids)
    assert _parts(split_for(data, 3, protocol="published")) == [train, val, test]
    paper = split_for(data, 0)
    paper_shots = [set(shot_of[p].tolist()) for p in (paper.train, paper.test)]
    assert paper_shots[0] & paper_shots[1]


def test_tristar_published_split_survives_the_prepared_cache_and_trains(tmp_path, capsys):
    write_tristar(tmp_path / "raw", shots_per_split=3, frames=9)
    out = tmp_path / "cache"
    assert main(["prepare", "tristar", "--root", str(tmp_path / "raw"), "--out", str(out),
                 "--data-opt", "image_size=16"]) == 0
    direct = get_dataset("tristar", root=str(tmp_path / "raw"), image_size=16).load()
    cached = get_dataset("tristar", root=str(out)).load()
    np.testing.assert_array_equal(direct.published, cached.published)
    np.testing.assert_array_equal(direct.groups, cached.groups)
    capsys.readouterr()
    code = main(["train", "--method", "student", "--dataset", "tristar", "--root", str(out), "--modality", "thermal",
                 "--epochs", "1", "--batch-size", "4", "--split", "published", "--runs", str(tmp_path / "runs"),
                 "--quiet", "--json"])
    assert code == 0
    import json

    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["spec"]["train"]["split"] == "published"
    from cmkd.datasets import Split

    saved = Split.load(next((tmp_path / "runs").rglob("split.npz")))
    assert _parts(saved) == _parts(split_for(cached, 0, protocol="published"))


def _allsplit(root, train_folders, test_folders):
    """The toolbox's allsplit.mat: absolute paths of the toolbox authors' machine, in MATLAB cell arrays."""
    prefix = "/n/fs/sun3d/data/SUNRGBD/"
    cell = lambda names: np.array([prefix + n + "/" for n in names], dtype=object)  # noqa: E731
    savemat(str(root / "allsplit.mat"), {"alltrain": cell(train_folders), "alltest": cell(test_folders)})


def test_sunrgbd_published_split_from_the_toolbox_lists(tmp_path):
    write_sunrgbd(tmp_path, per_class=16)
    adapter = get_dataset("sunrgbd", root=str(tmp_path), image_size=16)
    folders = [str(f.relative_to(tmp_path / "SUNRGBD")) for _, f in adapter.samples()]
    labels = np.array([label for label, _ in adapter.samples()])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(folders))
    train_rows, test_rows, unlisted = order[:100], order[100:156], order[156:]
    _allsplit(tmp_path, [folders[i] for i in train_rows], [folders[i] for i in test_rows])
    data = get_dataset("sunrgbd", root=str(tmp_path), image_size=16).load()
    assert (data.published[train_rows] == 0).all() and (data.published[test_rows] == 2).all()
    assert (data.published[unlisted] == -1).all()
    s0, s1 = split_for(data, 0, protocol="published"), split_for(data, 1, protocol="published")
    train, val, test = _parts(s0)
    assert test == set(test_rows.tolist())  # the official test list, as published
    assert train | val == set(train_rows.tolist()) and not train & val  # validation carved from train
    assert not (train | val | test) & set(unlisted.tolist())  # unlisted samples are in no part
    for c in np.unique(labels[train_rows]):  # per class: 1/8 of its train rows (the paper's 10 : 70)
        n_c = int((labels[train_rows] == c).sum())
        assert sum(labels[i] == c for i in val) == int(n_c * CARVE_FRACTION)
    assert _parts(s1)[2] == test and _parts(s1)[1] != val  # the repetition re-draws validation only


def test_sunrgbd_without_the_toolbox_file_and_datasets_without_a_split_refuse(tmp_path, capsys):
    write_sunrgbd(tmp_path / "sun", per_class=12)
    data = get_dataset("sunrgbd", root=str(tmp_path / "sun"), image_size=16).load()
    with pytest.raises(UserError, match="allsplit.mat"):
        split_for(data, 0, protocol="published")
    write_eurosat(tmp_path / "eurosat")
    eurosat = get_dataset("eurosat-ms-sar", root=str(tmp_path / "eurosat")).load()
    with pytest.raises(UserError, match="EuroSAT publishes no official split"):
        split_for(eurosat, 0, protocol="published")
    synthetic = get_dataset("synthetic", n_samples=120, image_size=16).load()
    with pytest.raises(UserError, match="no published train/test split"):
        split_for(synthetic, 0, protocol="published")
    assert main(["train", "--method", "student", "--dataset", "synthetic", "--modality", "rgb", "--split", "official"]) == 2
    assert "train.split must be one of paper, published, got 'official'" in capsys.readouterr().err


def test_carving_by_groups_keeps_groups_whole():
    labels = np.repeat([0, 1], 40)
    groups = np.arange(80) // 5  # 16 recordings of 5 frames
    part = np.where(groups < 12, 0, 2).astype(np.int8)
    split = published_split(part, labels, 0, groups)
    train_g, val_g = set(groups[split.train].tolist()), set(groups[split.val].tolist())
    assert val_g and not train_g & val_g
    assert set(split.test.tolist()) == set(np.flatnonzero(part == 2).tolist())
