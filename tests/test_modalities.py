"""Modalities of any shape (images of unequal sizes, spectrograms, vectors, sequences) and MST-Distill's released
layouts (avmnist, ravdess, crisismmd): kinds, encoders, augmentation, the adapters on files written in the
released formats, their normalisation and split rows, the refusals, and one benchmark through to the tables."""

from __future__ import annotations

import json
import pickle

import mst_files
import numpy as np
import pandas as pd
import pytest
import torch

from cmkd.datasets import MultiModalData, get_dataset
from cmkd.datasets.mst import mst_min_max, read_indices
from cmkd.datasets.splits import PermutationSplits
from cmkd.errors import UserError
from cmkd.harness.engine.augment import augment, strong_augment
from cmkd.harness.engine.data import data_info, split_for
from cmkd.methods import get_method
from cmkd.methods.backbones import arch_name, check_encoders, encoder_for, feature_dim_of


def mixed(n: int = 24) -> MultiModalData:
    rng = np.random.default_rng(0)
    return MultiModalData("mixed", {
        "img": rng.random((n, 1, 28, 28), dtype=np.float32), "spec": rng.random((n, 1, 40, 32), dtype=np.float32),
        "vec": rng.random((n, 12), dtype=np.float32), "video": rng.random((n, 3, 3, 16, 16), dtype=np.float32),
        "steps": rng.random((n, 5, 7), dtype=np.float32)}, rng.integers(0, 3, n), ["a", "b", "c"], "img",
        kinds={"spec": "spectrogram"})


def test_kinds_follow_the_ranks_unless_declared_and_each_kind_gets_its_encoder():
    data = mixed()
    assert data.kinds == {"img": "image", "spec": "spectrogram", "vec": "vector", "video": "sequence", "steps": "sequence"}
    assert data.channels() == {"img": 1, "spec": 1, "vec": 12, "video": 3, "steps": 7}
    assert [data.image_size(m) for m in data.modalities] == [(28, 28), (40, 32), None, (16, 16), None]
    info = data_info(data)
    assert {m: arch_name(info, m) for m in data.modalities} == {
        "img": "resnet18", "spec": "resnet18", "vec": "mlp", "video": "resnet18", "steps": "mlp"}
    x = {m: torch.from_numpy(a[:4]) for m, a in data.modalities.items()}
    for m in data.modalities:
        enc = encoder_for(info, m).eval()
        assert enc(x[m]).shape == (4, feature_dim_of(info, m))
    # a sequence is its frame encoder on every step, averaged over time
    enc = encoder_for(info, "video").eval()
    frames = torch.stack([enc.frame(x["video"][:, t]) for t in range(3)], 1).mean(1)
    torch.testing.assert_close(enc(x["video"]), frames)
    # the multi-modal teacher fuses pooled vectors of every kind and size (no equal-size rule any more)
    cls = get_method("teacher-mm")
    assert cls(info, None, cls.Options()).predict(x)["all"].shape == (4, 3)


def test_a_declared_kind_joins_the_content_hash_and_images_only_keep_theirs():
    rng = np.random.default_rng(1)
    a, y = rng.random((8, 1, 6, 6), dtype=np.float32), rng.integers(0, 2, 8)
    plain = MultiModalData("d", {"x": a, "z": a.copy()}, y, ["p", "q"], "x")
    same = MultiModalData("d", {"x": a, "z": a.copy()}, y, ["p", "q"], "x", kinds={"x": "image", "z": "image"})
    spec = MultiModalData("d", {"x": a, "z": a.copy()}, y, ["p", "q"], "x", kinds={"z": "spectrogram"})
    assert plain.fingerprint() == same.fingerprint() != spec.fingerprint()


@pytest.mark.parametrize("arrays, kinds, message", [
    ({"x": np.zeros((4, 2, 2, 2, 2, 2))}, {}, "is none of N x C x H x W"),
    ({"x": np.zeros((4, 3))}, {"x": "spectrogram"}, "a spectrogram is N x C x F x T"),
    ({"x": np.zeros((4, 3))}, {"x": "audio"}, "kind 'audio' is not one of"),
    ({"x": np.zeros((4, 3))}, {"y": "vector"}, "kinds name modality 'y'"),
    ({"x": np.zeros((4, 0))}, {}, "an empty axis"),
])
def test_shapes_and_kinds_that_do_not_fit_are_refused_in_one_line(arrays, kinds, message):
    with pytest.raises(UserError, match=message):
        MultiModalData("d", arrays, np.zeros(4, int), ["a"], "x", kinds=kinds)


def test_a_conv_network_named_for_a_vector_modality_is_refused_before_anything_is_built():
    info = data_info(mixed())
    bad = type(info)(**{**info.__dict__, "arch": "vec=resnet34"})
    with pytest.raises(UserError, match="this modality holds vectors"):
        check_encoders(bad, ["vec"])
    cls = get_method("fitnets")
    with pytest.raises(UserError, match="no stage"):  # a map-distilling method refuses a vector student in one line
        cls.check(info, "vec", cls.Options())


def test_augmentation_moves_images_only_and_the_random_stream_does_not_depend_on_kinds():
    data = mixed(16)
    x = {m: torch.from_numpy(data.modalities[m]) for m in ("vec", "video", "steps", "spec", "img")}  # the image last
    images = frozenset({"img"})
    out = augment(x, torch.Generator().manual_seed(3), False, images)
    for m in ("spec", "vec", "video", "steps"):
        assert out[m] is x[m]
    assert not torch.equal(out["img"], x["img"])
    # the image's draws are those it gets when the spectrogram before it is flipped too: skipped ones still draw
    both = augment(x, torch.Generator().manual_seed(3), False, frozenset({"img", "spec"}))
    torch.testing.assert_close(out["img"], both["img"])
    assert not torch.equal(both["spec"], x["spec"])
    strong = strong_augment({"img": x["img"], "vec": x["vec"]}, torch.Generator().manual_seed(0), images)
    assert strong["vec"] is x["vec"] and not torch.equal(strong["img"], x["img"])


# ---- MST-Distill's layouts ------------------------------------------------------------------------------------
def test_avmnist_reads_the_released_files_paired_in_order_and_normalises_as_the_released_code(tmp_path):
    lv = mst_files.write_avmnist(tmp_path, 30, 10)
    raw = get_dataset("avmnist", root=str(tmp_path), normalize="none").load()
    assert raw.modalities["image"].shape == (40, 1, 28, 28) and raw.modalities["audio"].shape == (40, 1, 112, 112)
    assert raw.kinds == {"image": "image", "audio": "spectrogram"}
    # train rows then test rows, every modality and the labels in the same order: the level of row i is readable
    for m in ("image", "audio"):
        np.testing.assert_allclose(raw.modalities[m].reshape(40, -1).mean(1), lv + 0.5, atol=0.05)
    assert (raw.labels == (lv // 10).astype(int)).all()
    data = get_dataset("avmnist", root=str(tmp_path)).load()
    flat = np.load(tmp_path / "avmnist/image/test_data.npy")[3].astype(np.float64)  # row 33, per-row min-max
    np.testing.assert_allclose(data.modalities["image"][33].ravel(), (flat - flat.min()) / (flat.max() - flat.min()),
                               rtol=1e-6)
    assert data.modalities["audio"].min() == 0 and data.modalities["audio"].max() == 1


def test_the_split_is_the_released_protocol_same_seed_same_rows_from_the_csv_or_regenerated(tmp_path):
    mst_files.write_crisismmd(tmp_path, 50, dims=(16, 8))
    generated = get_dataset("crisismmd", root=str(tmp_path)).load()
    mst_files.write_indices(tmp_path / "metadata" / "CMMD-V2_indices.csv", 50)
    from_csv = get_dataset("crisismmd", root=str(tmp_path)).load()
    table = pd.read_csv(tmp_path / "metadata" / "CMMD-V2_indices.csv")
    for r in (0, 4, 19):
        a, b = split_for(generated, r), split_for(from_csv, r)
        order = table[f"group_{r}"].to_numpy()
        assert list(b.train) == list(order[:30]) and list(b.val) == list(order[30:40]) and list(b.test) == list(order[40:])
        assert a.fingerprint() == b.fingerprint()
        assert not set(b.train) & set(b.test) and not set(b.val) & set(b.test)
    assert split_for(generated, 25).train.shape == (30,)  # regenerated: the stream goes on
    with pytest.raises(UserError, match="none for repetition 20; use seeds 0..19"):
        split_for(from_csv, 20)


@pytest.mark.parametrize("columns, message", [
    ({"group_0": list(range(9)) + [0]}, "not a permutation of the data's 10 rows"),
    ({"group_0": list(range(8))}, "it has 8 values"),
    ({"g0": list(range(10))}, "columns must be group_0"),
])
def test_an_index_csv_whose_rows_do_not_cover_the_data_is_refused(tmp_path, columns, message):
    path = tmp_path / "i.csv"
    pd.DataFrame({k: pd.Series(v) for k, v in columns.items()}).to_csv(path, index=False)
    with pytest.raises(UserError, match=message):
        read_indices(path, 10)


class NotAnArray:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_crisismmd_loads_plain_arrays_or_tensors_weights_only_and_refuses_any_other_pickle(tmp_path, capsys):
    lv = mst_files.write_crisismmd(tmp_path, 20, dims=(16, 8))
    data = get_dataset("crisismmd", root=str(tmp_path)).load()
    assert data.kinds == {"visual": "vector", "text": "vector"} and data.channels() == {"visual": 16, "text": 8}
    np.testing.assert_allclose(data.modalities["text"].mean(1), lv, atol=1.0)  # as stored: no normalisation
    path = tmp_path / "CMMD-V2" / "CMMD_data.pth"
    torch.save(tuple(torch.from_numpy(np.asarray(a)) for a in (data.modalities["visual"], data.modalities["text"],
                                                                data.labels)), path)
    assert get_dataset("crisismmd", root=str(tmp_path)).load().fingerprint() == data.fingerprint()
    torch.save((NotAnArray(), data.modalities["text"], data.labels), path)
    with pytest.raises(UserError, match="holds objects other than plain arrays .*never unpickled"):
        get_dataset("crisismmd", root=str(tmp_path)).load()
    assert "must never run" not in capsys.readouterr().out
    with open(path, "wb") as f:
        pickle.dump((1, 2), f)
    with pytest.raises(UserError, match="CMMD_data.pth"):
        get_dataset("crisismmd", root=str(tmp_path)).load()


def test_ravdess_video_is_a_sequence_of_frames_normalised_per_channel_over_the_data_set(tmp_path):
    lv = mst_files.write_ravdess(tmp_path, 12, frames=3, side=8, mfcc=(15, 20))
    data = get_dataset("ravdess", root=str(tmp_path)).load()
    assert data.kinds == {"video": "sequence", "audio": "spectrogram"}
    assert data.modalities["video"].shape == (12, 3, 3, 8, 8) and data.modalities["audio"].shape == (12, 1, 15, 20)
    video = np.load(tmp_path / "RAVDESS_preprocessed_npy" / "video_data.npy").astype(np.float64)
    lo, hi = video.min(axis=(0, 1, 3, 4), keepdims=True), video.max(axis=(0, 1, 3, 4), keepdims=True)
    np.testing.assert_allclose(data.modalities["video"], (video - lo) / (hi - lo), rtol=1e-6)
    assert np.corrcoef(data.modalities["video"].mean(axis=(1, 2, 3, 4)), lv)[0, 1] > 0.9  # still paired by level


def test_a_sequence_of_varying_length_is_refused_never_unpickled(tmp_path):
    mst_files.write_ravdess(tmp_path, 4, frames=3, side=8, mfcc=(15, 20))
    ragged = np.empty(4, dtype=object)
    for i, t in enumerate((3, 3, 2, 3)):
        ragged[i] = np.zeros((t, 3, 8, 8), np.uint8)
    np.save(tmp_path / "RAVDESS_preprocessed_npy" / "video_data.npy", ragged, allow_pickle=True)
    with pytest.raises(UserError, match="holds Python objects.*varying length.*never unpickled"):
        get_dataset("ravdess", root=str(tmp_path)).load()


@pytest.mark.parametrize("files, message", [
    ("missing", "train_data.npy is missing: avmnist reads"),
    ("rows", "each row must hold 784 values"),
    ("count", "image has 41 rows but there are 40 labels"),
])
def test_avmnist_files_of_the_wrong_shape_or_count_are_refused_in_one_line(tmp_path, files, message):
    mst_files.write_avmnist(tmp_path, 30, 10)
    image = tmp_path / "avmnist" / "image" / "train_data.npy"
    if files == "missing":
        image.unlink()
    elif files == "rows":
        np.save(image, np.zeros((30, 700), np.float32))
    else:
        np.save(image, np.zeros((31, 784), np.float32))
    with pytest.raises(UserError, match=message):
        get_dataset("avmnist", root=str(tmp_path)).load()


def test_mst_min_max_takes_the_released_codes_axes_for_each_rank():
    rng = np.random.default_rng(0)
    x2, x4 = rng.random((5, 6)), rng.random((5, 2, 3, 3))
    np.testing.assert_allclose(mst_min_max(x2), (x2 - x2.min(1, keepdims=True)) / np.ptp(x2, 1, keepdims=True), rtol=1e-6)
    lo, hi = x4.min((0, 2, 3), keepdims=True), x4.max((0, 2, 3), keepdims=True)
    np.testing.assert_allclose(mst_min_max(x4), (x4 - lo) / (hi - lo), rtol=1e-6)
    assert len(PermutationSplits(10)) == 20 and 25 in PermutationSplits(10)


def test_the_mst_profile_plans_without_the_data(capsys):
    from cmkd.harness.cli.main import main

    assert main(["bench", "--profile", "mst", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "avmnist" in out and "crisismmd" in out and "ravdess" in out
    assert "declared 70000 samples" in out and "declared 16058 samples" in out


def test_a_benchmark_on_each_released_layout_runs_through_to_the_tables(ray_session, tmp_path):
    from cmkd.harness.sweep.bench_config import load_config
    from cmkd.harness.sweep.tune import run_bench
    from cmkd.results.report import write_all_tables

    mst_files.write_avmnist(tmp_path / "data" / "avmnist", 48, 12)
    mst_files.write_crisismmd(tmp_path / "data" / "crisismmd", 60, dims=(32, 16))
    mst_files.write_ravdess(tmp_path / "data" / "ravdess", 40, frames=2, side=16, mfcc=(15, 16))
    datasets = ", ".join(f"{{name='{d}', root='{tmp_path / 'data' / d}'{a}}}" for d, a in (
        ("avmnist", ", arch='lenet5'"), ("crisismmd", ", arch='mst-mlp'"), ("ravdess", "")))
    cfg = load_config("mst", overrides=[f"datasets=[{datasets}]", "methods=['kdv1']", "seeds=[0]", "train.epochs=1",
                                        "train.batch_size=16", "resources.cpus_per_trial=1", "resources.gpus_per_trial=0"])
    summary = run_bench(cfg, out=tmp_path / "b", say=lambda s: None)
    assert summary.failed == 0 and summary.finished == summary.planned
    write_all_tables(tmp_path / "b", echo=lambda s: None)
    rows = pd.read_parquet(tmp_path / "b" / "results.parquet")
    assert set(rows.dataset) == {"avmnist", "crisismmd", "ravdess"}
    assert set(rows[rows.dataset == "avmnist"].arch) == {"lenet5"}
    table = (tmp_path / "b" / "tables" / "tables.md").read_text()
    assert "AV-MNIST" in table and "CrisisMMD" in table and "RAVDESS" in table
    # a vector student and a sequence student export, and predict reads .npy batches of their shapes
    from cmkd.harness.cli.main import main

    for dataset, modality, shape in (("crisismmd", "text", (16,)), ("ravdess", "video", (2, 3, 16, 16))):
        trial = rows[(rows.dataset == dataset) & (rows.method == "kdv1") & (rows.modality == modality)].iloc[0]
        folder = next((tmp_path / "b" / "runs").rglob(f"seed{trial.seed}-{trial.trial_id}"))
        out = tmp_path / f"deploy-{dataset}"
        assert main(["export", str(folder), "--out", str(out)]) == 0
        sidecar = json.loads((out / f"model_{modality}.json").read_text())
        kind = "vector" if len(shape) == 1 else "sequence"
        assert sidecar["inputs"][0]["kind"] == kind and sidecar["inputs"][0]["shape"] == list(shape)
        card = (out / f"model_{modality}.md").read_text()
        assert f"{kind} of shape" in card
        assert f'type: "{"tabular" if kind == "vector" else "video"}-classification"' in card  # not an image task
        np.save(tmp_path / "x.npy", np.random.default_rng(0).random((3, *shape), dtype=np.float32))
        assert main(["predict", "--model", str(out / f"model_{modality}.pt2"), "--input", str(tmp_path / "x.npy"),
                     "--output", str(tmp_path / "p.csv")]) == 0
        assert len(pd.read_csv(tmp_path / "p.csv")) == 3
        np.save(tmp_path / "bad.npy", np.zeros((3, *shape[:-1], shape[-1] + 1), np.float32))
        assert main(["predict", "--model", str(out / f"model_{modality}.pt2"), "--input", str(tmp_path / "bad.npy")]) == 2


def test_cmkd_prepare_writes_a_cache_that_hashes_and_splits_as_the_released_files(tmp_path, capsys):
    from cmkd.harness.cli.main import main

    mst_files.write_avmnist(tmp_path / "raw", 30, 10)
    direct = get_dataset("avmnist", root=str(tmp_path / "raw")).load()
    assert main(["prepare", "avmnist", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "cache")]) == 0
    assert "prepared avmnist: 40 samples, image 1x28x28, spectrogram 1x112x112" in capsys.readouterr().out
    cached = get_dataset("avmnist", root=str(tmp_path / "cache")).load()
    assert isinstance(cached.modalities["audio"], np.memmap) and cached.kinds == direct.kinds
    assert cached.fingerprint() == direct.fingerprint()  # a trial's identity does not depend on the form
    for r in (0, 7):
        assert split_for(cached, r).fingerprint() == split_for(direct, r).fingerprint()
    np.testing.assert_array_equal(cached.modalities["audio"], direct.modalities["audio"])
    with pytest.raises(UserError, match="prepared with normalize='mst', not normalize='none'"):
        get_dataset("avmnist", root=str(tmp_path / "cache"), normalize="none").load()
