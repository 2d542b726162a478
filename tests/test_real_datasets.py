"""The three published data sets read from their real formats, the cache, official arrays, bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from real_fixtures import SUN_CLASSES, TAGS, write_eurosat, write_sunrgbd, write_tristar

from cmkd.datasets import get_dataset
from cmkd.datasets.cache import read_cache
from cmkd.datasets.preprocess import apply_stats, percentile_stats
from cmkd.errors import UserError
from cmkd.harness.cli.main import main

EUROSAT_CLASSES = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                   "PermanentCrop", "Residential", "River", "SeaLake"]


@pytest.fixture(scope="module")
def eurosat(tmp_path_factory):
    root = tmp_path_factory.mktemp("eurosat")
    return root, write_eurosat(root)


@pytest.fixture(scope="module")
def sunrgbd(tmp_path_factory):
    root = tmp_path_factory.mktemp("sun")
    return root, write_sunrgbd(root)


@pytest.fixture(scope="module")
def tristar(tmp_path_factory):
    root = tmp_path_factory.mktemp("tristar")
    return root, write_tristar(root)


# ---- EuroSAT --------------------------------------------------------------------------------------
@pytest.mark.parametrize("deep", [True, False], ids=["deep-tree", "flat-tree"])
def test_eurosat_reads_shapes_labels_and_pairs_by_name(tmp_path, deep):
    ids = write_eurosat(tmp_path, deep=deep)
    raw = get_dataset("eurosat-ms-sar", root=str(tmp_path)).read_raw()
    assert raw.modalities["ms"].shape == (30, 13, 16, 16) and raw.modalities["sar"].shape == (30, 2, 16, 16)
    assert raw.modalities["ms"].dtype == np.float32
    # pairing: MS band 0 = 100 + id, SAR band 0 = -(id + 1) for the same sample
    ms_id = raw.modalities["ms"][:, 0, 0, 0] - 100
    sar_id = -raw.modalities["sar"][:, 0, 0, 0] - 1
    np.testing.assert_array_equal(ms_id, sar_id)
    # labels: alphabetical class order over the ten published classes
    by_id = {sid: EUROSAT_CLASSES.index(c) for (c, _), sid in ids.items()}
    assert [by_id[int(i)] for i in ms_id] == raw.labels.tolist()
    assert set(raw.labels.tolist()) == {0, 1, 8}


def test_eurosat_bad_inputs(tmp_path):
    write_eurosat(tmp_path, per_class=3)
    sar = tmp_path / "EuroSAT-SAR"
    (sar / "Forest" / "Forest_2.tif").unlink()
    with pytest.raises(UserError, match=r"1 MS without SAR \(Forest/Forest_2.tif\)"):
        get_dataset("eurosat-ms-sar", root=str(tmp_path)).check()
    shutil.copy(sar / "Forest" / "Forest_1.tif", sar / "Forest" / "Forest_2.tif")
    (sar / "Lakes").mkdir()
    with pytest.raises(UserError, match="unknown class folder 'Lakes'"):
        get_dataset("eurosat-ms-sar", root=str(tmp_path)).check()
    (sar / "Lakes").rmdir()
    # wrong band count: a 3-band SAR file
    import tifffile

    tifffile.imwrite(sar / "Forest" / "Forest_2.tif", np.zeros((16, 16, 3), np.float32))
    with pytest.raises(UserError, match=r"Forest_2.tif: expected 2 bands, got 3"):
        get_dataset("eurosat-ms-sar", root=str(tmp_path)).read_raw()
    # truncated file
    data = (sar / "Forest" / "Forest_1.tif").read_bytes()
    (sar / "Forest" / "Forest_2.tif").write_bytes(data[: len(data) // 3])
    with pytest.raises(UserError, match="Forest_2.tif: cannot read the GeoTIFF"):
        get_dataset("eurosat-ms-sar", root=str(tmp_path)).read_raw()


def test_missing_root_and_unknown_layout(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        get_dataset("eurosat-ms-sar", root=str(tmp_path / "nope")).check()
    with pytest.raises(UserError, match="needs --root"):
        get_dataset("sunrgbd").check()
    (tmp_path / "something").mkdir()
    with pytest.raises(UserError, match="no EuroSAT MS tree found"):
        get_dataset("eurosat-ms-sar", root=str(tmp_path)).check()
    with pytest.raises(UserError, match="kv2.txt not found"):
        get_dataset("sunrgbd", root=str(tmp_path)).check()
    with pytest.raises(UserError, match="no train/ folder"):
        get_dataset("tristar", root=str(tmp_path)).check()


# ---- SUN RGB-D ------------------------------------------------------------------------------------
def test_sunrgbd_reads_rgb_and_decodes_bit_rotated_depth(sunrgbd):
    root, depth_mm = sunrgbd
    raw = get_dataset("sunrgbd", root=str(root), image_size=0).read_raw()
    assert raw.modalities["rgb"].shape == (30, 3, 15, 20) and raw.modalities["depth"].shape == (30, 1, 15, 20)
    # list order = kv2.txt order; depth decoded to the millimetres written, 0 kept as missing
    expected = [depth_mm[4244 + n] for n in range(30)]
    np.testing.assert_array_equal(raw.modalities["depth"][:, 0, 5, 5], expected)
    assert (raw.modalities["depth"][:, 0, 0, 0] == 0).all()
    assert set(raw.labels.tolist()) == set(SUN_CLASSES)
    resized = get_dataset("sunrgbd", root=str(root), image_size=16).read_raw()
    assert resized.modalities["rgb"].shape == (30, 3, 16, 16)


def test_sunrgbd_bad_inputs(tmp_path):
    write_sunrgbd(tmp_path, per_class=2)
    png = next((tmp_path / "SUNRGBD").glob("kv2/kinect2data/*/depth_bfx/*.png"))
    from PIL import Image

    Image.fromarray(np.zeros((15, 20), np.uint8)).save(png)  # 8-bit depth
    with pytest.raises(UserError, match=f"{png.name}: expected a 16-bit single-channel PNG"):
        get_dataset("sunrgbd", root=str(tmp_path), image_size=16).read_raw()
    mapping = tmp_path / "subsets/mapping.txt"
    lines = mapping.read_text().splitlines()
    mapping.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(UserError, match="mapping.txt: no entry for"):
        get_dataset("sunrgbd", root=str(tmp_path)).check()
    with pytest.raises(UserError, match="depth_dir must be depth or depth_bfx"):
        get_dataset("sunrgbd", root=str(tmp_path), depth_dir="hha").check()


# ---- TRISTAR ------------------------------------------------------------------------------------
def test_tristar_six_tag_filter_pairing_and_16_bit(tristar, capsys):
    root, kept = tristar
    raw = get_dataset("tristar", root=str(root), image_size=0).read_raw()
    assert raw.n == kept and "frames kept" in capsys.readouterr().err
    th, de = raw.modalities["thermal"][:, 0, 3, 3], raw.modalities["depth"][:, 0, 3, 3]
    np.testing.assert_array_equal(th - 29000, de - 2000)  # paired by file name, full 16-bit values
    assert th.max() > 29000 > 255
    assert raw.modalities["thermal"].shape[1:] == (1, 12, 16)
    # the label is the frame's one tag: counter % 6 was written
    np.testing.assert_array_equal(raw.labels, (th - 29000).astype(int) % 6)
    with_rgb = get_dataset("tristar", root=str(root), image_size=16, with_rgb=True).read_raw()
    assert with_rgb.channels() == {"thermal": 1, "depth": 1, "rgb": 3}


def test_tristar_unpaired_frame(tmp_path):
    write_tristar(tmp_path, shots_per_split=1, frames=3)
    # a frame that is kept (exactly one of the six tags) loses its depth image
    kept = [line.split()[0] for line in (tmp_path / "train/0/actions.txt").read_text().splitlines()
            if sum(t in TAGS for t in line.split()[1:]) == 1]
    (tmp_path / "train/0/depth" / f"{kept[0]}.png").unlink()
    with pytest.raises(UserError, match=rf"frame {kept[0]}.png exists in thermal/ but not in depth/ \(unpaired\)"):
        get_dataset("tristar", root=str(tmp_path)).frames()


# ---- normalisation, cache, official arrays ---------------------------------------------------------
def test_percentile_normalisation_matches_numpy(eurosat):
    root, _ = eurosat
    adapter = get_dataset("eurosat-ms-sar", root=str(root))
    raw = adapter.read_raw()
    ms = raw.modalities["ms"].copy()
    data = adapter.normalize(raw)[0]
    for c in range(13):
        lo, hi = np.percentile(ms[:, c], 2), np.percentile(ms[:, c], 98)
        np.testing.assert_allclose(data.modalities["ms"][:, c], np.clip((ms[:, c] - lo) / (hi - lo), 0, 1), atol=1e-6)
    assert data.modalities["ms"].min() >= 0 and data.modalities["ms"].max() <= 1
    stats = percentile_stats(ms, np.arange(5))
    np.testing.assert_allclose(stats[0], np.percentile(ms[:5, 0], [2, 98]))
    assert apply_stats(ms, stats).dtype == np.float32


@pytest.mark.parametrize("name, fixture", [("eurosat-ms-sar", "eurosat"), ("sunrgbd", "sunrgbd"), ("tristar", "tristar")])
def test_prepared_cache_equals_raw_and_trains(name, fixture, request, tmp_path, capsys):
    root, _ = request.getfixturevalue(fixture)
    opts = [] if name == "eurosat-ms-sar" else ["--data-opt", "image_size=16"]
    out = tmp_path / "cache"
    assert main(["prepare", name, "--root", str(root), "--out", str(out), "--workers", "1", *opts]) == 0
    printed = capsys.readouterr().out
    # the phases printed add up to the wall time they state
    laps = re.search(r"\n(.*) = ([\d.]+) s wall", printed)
    parts = [float(x) for x in re.findall(r"[a-z]+ ([\d.]+) s", laps.group(1))]
    assert len(parts) >= 5 and abs(sum(parts) - float(laps.group(2))) <= 0.01 * len(parts)
    # two decoding processes write the same bytes as one
    assert main(["prepare", name, "--root", str(root), "--out", str(tmp_path / "par"), "--workers", "2", *opts]) == 0
    assert "on 2 worker(s)" in capsys.readouterr().out
    for f in sorted(out.glob("*.npy")):
        assert f.read_bytes() == (tmp_path / "par" / f.name).read_bytes(), f.name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"] == name and sum(manifest["counts_per_class"].values()) == manifest["n"]
    assert manifest["normalisation"]["rows"] == "all" and manifest["checksum"]
    direct = get_dataset(name, root=str(root), **({} if name == "eurosat-ms-sar" else {"image_size": 16})).load()
    cached = get_dataset(name, root=str(out)).load()
    assert read_cache(out, name, verify=True).n == direct.n
    for m in direct.modalities:
        np.testing.assert_array_equal(direct.modalities[m], cached.modalities[m])
    np.testing.assert_array_equal(direct.labels, cached.labels)
    # cmkd train on the prepared data set
    rich = cached.rich
    # 10 samples per class: the official split leaves validation empty, the exact 0.8 cut does not
    code = main(["train", "--method", "student", "--dataset", name, "--root", str(out), "--modality", rich,
                 "--epochs", "1", "--batch-size", "4", "--runs", str(tmp_path / "runs"), "--quiet", "--split-rule", "exact"])
    assert code == 0 and "test F1" in capsys.readouterr().out


def test_interrupted_prepare_leaves_nothing_that_looks_complete(eurosat, tmp_path, monkeypatch):
    root, _ = eurosat
    from cmkd.datasets.eurosat import EuroSatMSSAR

    decoded = []
    real_decode = EuroSatMSSAR.decode

    def interrupted(self, sample):  # Ctrl-C half way through the decoding
        decoded.append(sample)
        if len(decoded) == 12:
            raise KeyboardInterrupt
        return real_decode(self, sample)

    monkeypatch.setattr(EuroSatMSSAR, "decode", interrupted)
    out = tmp_path / "cache"
    assert main(["prepare", "eurosat-ms-sar", "--root", str(root), "--out", str(out), "--workers", "1"]) == 130
    assert not out.exists() and not list(tmp_path.glob(".cache.partial-*"))
    monkeypatch.setattr(EuroSatMSSAR, "decode", real_decode)
    assert main(["prepare", "eurosat-ms-sar", "--root", str(root), "--out", str(out)]) == 0


def test_official_code_arrays_with_their_splits(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    np.save(tmp_path / "RGB_data_normalized.npy", rng.random((30, 3, 16, 16), dtype=np.float32))
    np.save(tmp_path / "DEPTH_data_normalized.npy", rng.random((30, 1, 16, 16), dtype=np.float32))
    np.save(tmp_path / "labels.npy", labels)
    perm = rng.permutation(30)
    np.save(tmp_path / "train_idx_0.npy", perm[:20])
    np.save(tmp_path / "valid_idx_0.npy", perm[20:24])
    np.save(tmp_path / "test_idx_0.npy", perm[24:])
    data = get_dataset("sunrgbd", root=str(tmp_path)).load()
    assert data.channels() == {"rgb": 3, "depth": 1} and data.splits[0].train.tolist() == perm[:20].tolist()
    generic = get_dataset("official-arrays", root=str(tmp_path), prefixes="RGB,DEPTH").load()
    np.testing.assert_array_equal(generic.modalities["depth"], data.modalities["depth"])
    from cmkd.harness.engine.spec import TrainConfig, TrialSpec
    from cmkd.harness.engine.trial import run_trial

    res = run_trial(TrialSpec(dataset="sunrgbd", method="student", modality="depth", data_root=str(tmp_path),
                              train=TrainConfig(epochs=1, batch_size=8)), runs_root=tmp_path / "runs")
    split = np.load(Path(res.out_dir) / "split.npz")
    assert split["test"].tolist() == perm[24:].tolist()  # the given split, not the rule
    np.save(tmp_path / "test_idx_1.npy", perm[:3])
    with pytest.raises(UserError, match="repetition 1 are incomplete"):
        get_dataset("sunrgbd", root=str(tmp_path)).load()
