"""Deployable models: cmkd train exports every method's outputs, cmkd export rebuilds them from kept
weights, cmkd predict reads them with their sidecar (checks, normalisation, probabilities, CSV, folders)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_DATA, tiny_spec
from PIL import Image

from cmkd.harness.cli.main import main
from cmkd.harness.engine.data import data_info, load_data
from cmkd.harness.engine.trial import run_trial
from cmkd.methods import get_method
from cmkd.methods.backbones import Classifier, FusionClassifier


def _csv(path: Path) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(open(path)))
    return rows[0], rows[1:]


def _probs(rows: list[list[str]], header: list[str]) -> np.ndarray:
    start = header.index(next(h for h in header if h.startswith("p_")))
    return np.array([[float(v) for v in r[start:]] for r in rows])


@pytest.fixture(scope="module")
def data():
    return load_data("synthetic", None, TINY_DATA)


def test_kd_student_exports_and_predicts_softmax_of_its_logits_as_csv(teachers, tmp_path, data, capsys):
    res = run_trial(tiny_spec(method="kdv1", modality="depth", scenario="cross-modal"),
                    out_dir=tmp_path / "kd", runs_root=teachers, export=True)
    model = Path(res.exports["depth"])
    assert model.name == "model_depth.pt2" and model.with_suffix(".json").is_file()
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert sidecar["inputs"] == [{"modality": "depth", "kind": "image", "shape": [1, 16, 16], "channels": 1,
                                  "image_size": [16, 16], "channel_order": ["depth[0]"],
                                  "normalisation": None, "layout": "N x C x H x W, float32",
                                  "normalisation_note": sidecar["inputs"][0]["normalisation_note"]}]
    assert sidecar["method"] == "kdv1" and sidecar["class_names"] == data.class_names and sidecar["model"] == model.name
    x = data.modalities["depth"][:7]
    np.save(tmp_path / "x.npy", x)
    assert main(["predict", "--model", str(model), "--input", str(tmp_path / "x.npy"), "--probs",
                 "--output", str(tmp_path / "p.csv")]) == 0
    header, rows = _csv(tmp_path / "p.csv")
    assert header == ["input", "prediction", "class_name"] + [f"p_{c}" for c in data.class_names]
    # independent: the student network as the method builds it, loaded with its kept best weights
    net = Classifier(1, data.n_classes)
    net.load_state_dict(torch.load(Path(res.out_dir) / "best_depth.pt", weights_only=True))
    with torch.no_grad():
        expected = torch.softmax(net.eval()(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_allclose(_probs(rows, header), expected, rtol=1e-5, atol=1e-6)
    assert [int(r[1]) for r in rows] == expected.argmax(1).tolist()
    assert [r[2] for r in rows] == [data.class_names[i] for i in expected.argmax(1)]
    # wrong size and wrong channels: one line, before the model runs
    capsys.readouterr()
    np.save(tmp_path / "big.npy", np.zeros((2, 1, 24, 24), np.float32))
    assert main(["predict", "--model", str(model), "--input", str(tmp_path / "big.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reads 16 x 16 depth images (as trained), the input is 24 x 24" in err[0]
    np.save(tmp_path / "rgb.npy", data.modalities["rgb"][:2])
    assert main(["predict", "--model", str(model), "--input", str(tmp_path / "rgb.npy")]) == 2
    assert "reads 1 channel(s) of depth" in capsys.readouterr().err


def test_discomkd_exports_each_branch_and_predict_gives_the_joint_models_probabilities(tmp_path, data):
    res = run_trial(tiny_spec(method="discomkd", modality=None, epochs=1), runs_root=tmp_path, export=True)
    split = np.load(Path(res.out_dir) / "split.npz")
    cls = get_method("discomkd")
    joint = cls(data_info(data), None, cls.Options())
    for m in ("rgb", "depth"):
        joint.export(m).load_state_dict(torch.load(Path(res.out_dir) / f"best_{m}.pt", weights_only=True))
    joint.eval()
    x = {k: torch.from_numpy(data.modalities[k][split["test"]]) for k in ("rgb", "depth")}
    for m in ("rgb", "depth"):
        np.save(tmp_path / f"{m}.npy", x[m].numpy())
        out = tmp_path / f"{m}.csv"
        assert main(["predict", "--model", res.exports[m], "--input", str(tmp_path / f"{m}.npy"), "--probs",
                     "--output", str(out)]) == 0
        header, rows = _csv(out)
        with torch.no_grad():
            expected = torch.softmax(joint.predict(x)[m], 1).numpy()  # the joint model's own output for m
        np.testing.assert_allclose(_probs(rows, header), expected, rtol=1e-5, atol=1e-6)
        assert len(rows) == len(split["test"])


def test_cmkd_export_rebuilds_a_trial_from_its_kept_weights_even_one_that_reads_two_modalities(teachers, tmp_path, data,
                                                                                               capsys):
    folder = next((teachers / "synthetic" / "teacher-mm").iterdir())  # the session's multi-modal teacher
    assert main(["export", str(folder), "--out", str(tmp_path / "mm")]) == 0
    model = tmp_path / "mm" / "model_all.pt2"
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert sorted(i["modality"] for i in sidecar["inputs"]) == ["depth", "rgb"]  # positional, in this order
    card = model.with_suffix(".md").read_text()  # its model card: both inputs; no benchmark, so no other seeds
    assert card.startswith("---\nmodel-index:") and "| input `rgb` | 3 channel(s)" in card and "| input `depth` |" in card
    assert "Trained outside a benchmark folder" in card and "mean over" not in card
    for m in ("rgb", "depth"):
        np.save(tmp_path / f"{m}.npy", data.modalities[m][:5])
    capsys.readouterr()
    assert main(["predict", "--model", str(model), "--input", f"rgb={tmp_path / 'rgb.npy'}",
                 "--input", f"depth={tmp_path / 'depth.npy'}", "--probs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header = lines[0].split("\t")
    probs = _probs([line.split("\t") for line in lines[1:]], header)
    net = FusionClassifier({"rgb": 3, "depth": 1}, data.n_classes)
    net.load_state_dict(torch.load(folder / "best_all.pt", weights_only=True))
    with torch.no_grad():
        expected = torch.softmax(net.eval()({m: torch.from_numpy(data.modalities[m][:5]) for m in ("rgb", "depth")}), 1)
    np.testing.assert_allclose(probs, expected.numpy(), rtol=1e-5, atol=1e-6)
    # one modality for a model that reads two: one line naming what is missing
    assert main(["predict", "--model", str(model), "--input", str(tmp_path / "rgb.npy")]) == 2
    assert "pass --input MODALITY=PATH for each of depth, rgb" in capsys.readouterr().err


def test_predict_reads_folders_of_images_and_applies_the_sidecars_normalisation(tmp_path, capsys):
    from torch import nn

    from cmkd.harness.engine.deploy import export_program

    class Sum(nn.Module):  # logits that show the input values: [sum, -sum]
        def forward(self, x):
            s = x.sum((1, 2, 3))
            return torch.stack([s, -s], 1)

    path = tmp_path / "model_depth.pt2"
    export_program(Sum(), [torch.zeros(2, 1, 4, 4)], path, {
        "inputs": [{"modality": "depth", "channels": 1, "image_size": [4, 4], "channel_order": ["depth"],
                    "normalisation": {"rule": "p2-p98", "rows": "all", "per_channel_low_high": [[100.0, 200.0]]}}],
        "class_names": ["pos", "neg"]})
    raw = np.array([[[[150.0] * 4] * 4], [[[50.0] * 4] * 4], [[[255.0] * 4] * 4]], np.float32)  # 3 x 1 x 4 x 4
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, a in enumerate(raw):
        Image.fromarray(a[0].astype(np.uint8)).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    capsys.readouterr()
    assert main(["predict", "--model", str(path), "--input", str(folder), "--output", str(tmp_path / "o.csv")]) == 0
    header, rows = _csv(tmp_path / "o.csv")
    assert [r[0] for r in rows] == ["img0.png", "img1.png", "img2.png"]
    # (v - 100) / 100 clipped to [0, 1]: 0.5, 0 and 1 per pixel -> sums 8, 0, 16: classes pos, pos (tie -> 0), pos
    from cmkd.harness.cli.predict import check_and_normalise, load_exported, predict_logits, read_input, read_sidecar

    arr, _ = read_input(folder)
    spec = read_sidecar(path)["inputs"][0]
    logits = predict_logits(load_exported(path), [check_and_normalise(arr, spec, "x", False)])
    np.testing.assert_allclose(logits[:, 0], [8.0, 0.0, 16.0])
    raw_logits = predict_logits(load_exported(path), [check_and_normalise(arr, spec, "x", True)])  # --normalized
    np.testing.assert_allclose(raw_logits[:, 0], raw.sum((1, 2, 3)))
    # a model without its sidecar is refused, naming the fix
    path.with_suffix(".json").unlink()
    np.save(tmp_path / "x.npy", raw)
    assert main(["predict", "--model", str(path), "--input", str(tmp_path / "x.npy")]) == 2
    assert "has no sidecar model_depth.json" in capsys.readouterr().err


def test_export_and_predict_refuse_bad_input_in_one_line(tmp_path, capsys):
    res = run_trial(tiny_spec(epochs=1), runs_root=tmp_path / "runs", keep_weights=True)
    folder = Path(res.out_dir)

    def err(args) -> str:
        assert main(args) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cmkd: error: "), lines
        return lines[0]

    capsys.readouterr()
    assert "is not a trial folder (no spec.json)" in err(["export", str(tmp_path)])
    assert "has no output 'depth'; its outputs: rgb" in err(["export", str(folder), "--output", "depth"])
    (folder / "best_rgb.pt").unlink()  # what keep_weights = "best" does to a cell's other seeds
    assert "keeps no best weights of output 'rgb'" in err(["export", str(folder)])
    (folder / "result.json").rename(folder / "result.json.bak")
    assert "holds no finished trial (no result.json)" in err(["export", str(folder)])
    assert not list(folder.glob("model_*"))  # nothing half-written
    # predict: a folder without images, images of different sizes
    from cmkd.harness.engine.deploy import export_program

    model = tmp_path / "m" / "model_depth.pt2"
    export_program(Classifier(1, 3), [torch.zeros(2, 1, 16, 16)], model, {
        "inputs": [{"modality": "depth", "channels": 1, "image_size": [16, 16], "normalisation": None}],
        "class_names": ["a", "b", "c"]})
    (tmp_path / "empty").mkdir()
    assert "holds no image" in err(["predict", "--model", str(model), "--input", str(tmp_path / "empty")])
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(mixed / "a.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(mixed / "b.png")
    assert "the images differ in shape" in err(["predict", "--model", str(model), "--input", str(mixed)])
    # a folder mixing modalities (an RGB image beside a one-channel depth map) is named as such, not as a size
    modal = tmp_path / "modal"
    modal.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(modal / "a_rgb.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(modal / "b_depth.png")
    msg = err(["predict", "--model", str(model), "--input", str(modal)])
    assert "different channel counts (1 channel(s) (b_depth.png), 3 channel(s) (a_rgb.png))" in msg
    assert "its own folder" in msg and "differ in shape" not in msg
