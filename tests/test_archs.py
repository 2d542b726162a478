"""The architecture registry: a contract over every registered entry (as timm's tests iterate over its
models), the paper's ResNet-18 bit for bit, any teacher with any student through every method, and the
bad inputs refused in one line before any compute."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
import torchvision
from torch import nn

from cmkd.archs import ARCHS, POOL, forward_stages, get_arch, stage_shapes
from cmkd.archs.base import expected_side
from cmkd.archs.choice import ArchChoice
from cmkd.errors import UserError
from cmkd.methods import FUSED, METHODS, DataInfo, get_method
from cmkd.methods.backbones import Classifier, encoder_for

#: every registered image architecture, and one timm model by name (timm's own registry behind ``timm:``)
IMAGE_ARCHS = [n for n, c in ARCHS.items() if c.input_kind == "image"] + ["timm:resnet18d"]
CHANNELS, SIZES = (1, 2, 3, 13), (16, 32, 64)


@pytest.mark.parametrize("name", IMAGE_ARCHS)
def test_every_architecture_builds_for_any_channels_and_size_or_refuses_in_one_line(name):
    """Built (on the meta device: shapes, no compute) for 1, 2, 3 and 13 channels at 16, 32 and 64 px, with
    every declared stage where it says (channels, and a side of size / stride); or refused by ``check``
    with a one-line UserError, never a traceback."""
    cls = get_arch(name)
    declared = cls.stages()
    built = 0
    for c in CHANNELS:
        for s in SIZES:
            try:
                cls.check(c, (s, s))
            except UserError as exc:
                assert "\n" not in str(exc) and name in str(exc)
                continue
            shapes = stage_shapes(lambda: cls.build(c, (s, s)), c, (s, s), (*declared, POOL))
            for stage, d in declared.items():
                assert shapes[stage] == (d.channels, expected_side(s, d.stride), expected_side(s, d.stride)), (stage, c, s)
            assert len(shapes[POOL]) == 1
            built += 1
    assert built >= 6  # an architecture takes most of the grid (a ViT: 16, 32 and 64 px; ConvNeXt: 32 and 64)


@pytest.mark.parametrize("name", IMAGE_ARCHS)
def test_the_stage_path_is_the_pooled_path_and_the_classifier_exports(name):
    """``forward_stages`` returns the pooled features ``forward`` does (one pass, hooks removed after), and a
    classifier on the encoder exports with ``torch.export`` to the same logits."""
    cls = get_arch(name)
    torch.manual_seed(0)
    encoder = cls.build(2, (32, 32)).eval()
    x = torch.randn(2, 2, 32, 32)
    with torch.no_grad():
        pooled, feats = forward_stages(encoder, x, (*cls.stages(), POOL))
        torch.testing.assert_close(pooled, encoder(x))
        torch.testing.assert_close(feats[POOL], pooled)
    assert pooled.shape == (2, encoder.feature_dim)
    assert not any(m._forward_hooks for m in encoder.modules())
    net = Classifier(encoder, 5).eval()
    program = torch.export.export(net, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), net(x))


def test_the_mlp_encodes_vectors_and_refuses_images_and_conv_nets_refuse_vectors():
    mlp = get_arch("mlp")
    encoder = mlp.build(7, None).eval()
    assert encoder(torch.randn(4, 7)).shape == (4, encoder.feature_dim)
    with pytest.raises(UserError, match="reads vectors"):
        mlp.check(3, (16, 16))
    with pytest.raises(UserError, match="use --arch mlp"):
        get_arch("resnet18").check(7, None)


def test_resnet18_is_the_papers_network_bit_for_bit():
    """The registry's resnet18 draws the same random numbers in the same order as the code before it:
    torchvision's ResNet-18, then a fresh 7x7/2 first convolution for C channels, fc removed, a linear head."""
    for channels in (1, 3, 13):
        torch.manual_seed(7)
        ours = Classifier(get_arch("resnet18").build(channels, (32, 32)), 6).state_dict()
        torch.manual_seed(7)
        net = torchvision.models.resnet18(weights=None)
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        net.fc = nn.Identity()
        head = nn.Linear(512, 6)
        before = {**{f"encoder.{k}": v for k, v in net.state_dict().items()}, **{f"head.{k}": v for k, v in head.state_dict().items()}}
        assert list(ours) == list(before)
        assert all(torch.equal(ours[k], before[k]) for k in ours)


def test_the_default_architecture_moves_no_trial_id():
    """arch, teacher_arch and teacher_options came after trials were recorded: at their defaults a trial id is
    what the code before them computed (the same pin as train.width's test); any other value is another trial."""
    from cmkd.harness.engine.spec import TrainConfig, TrialSpec

    spec = TrialSpec(dataset="synthetic", method="student", modality="rgb", seed=0,
                     dataset_options={"n_samples": 120, "image_size": 16},
                     train=TrainConfig(epochs=2, batch_size=32, threads=1))
    assert spec.trial_id() == "844ee7109266"
    assert spec.replace(arch="resnet18", teacher_arch="rgb=resnet18").trial_id() == "844ee7109266"  # canonical forms
    others = {spec.replace(arch="resnet34").trial_id(), spec.replace(teacher_arch="resnet34").trial_id(),
              spec.replace(teacher_options={"x": 1}).trial_id(), spec.replace(arch="depth=mobilenet_v2").trial_id()}
    assert len(others) == 4 and "844ee7109266" not in others


def test_arch_choices_parse_to_one_canonical_text():
    assert str(ArchChoice.parse("rgb=resnet34,depth=mobilenet_v2")) == "resnet18,depth=mobilenet_v2,rgb=resnet34"
    assert str(ArchChoice.join(["resnet34", "depth=resnet34"])) == "resnet34"
    assert ArchChoice.parse("resnet34,depth=timm:resnet18d").for_modality("depth") == "timm:resnet18d"
    for bad, message in (("resnet18x", "did you mean 'resnet18'"), ("resnet18,resnet34", "two default"),
                         ("rgb=resnet18,rgb=resnet34", "twice"), ("timm:resnet18dd", "timm has no model")):
        with pytest.raises(UserError, match=message):
            ArchChoice.parse(bad)


# ---- every method with every kind of pair ---------------------------------------------------------
INFO = DataInfo("pairs", {"rgb": 3, "depth": 1}, {"rgb": (32, 32), "depth": (32, 32)}, 4, "rgb")
#: same family, across families, a small CIFAR-style student
PAIRS = [("resnet34", "resnet18"), ("resnet18", "mobilenet_v3_small"), ("resnet32x4", "resnet8x4")]
CASES = [(name, kind, pair) for name, cls in sorted(METHODS.items()) for kind in (cls.teacher_kinds or (None,))
         for pair in PAIRS if kind or pair == PAIRS[0]]
#: pairs a method refuses by design, with its one-line reason (SDD reads the last stage through the head)
REFUSED = {("sdd", PAIRS[1]): "sdd puts sub-regions of the student's last map through its classifier"}


@pytest.mark.parametrize("name, kind, pair", CASES, ids=[f"{n}-{k or 'none'}-{t}-{s}" for n, k, (t, s) in CASES])
def test_one_training_step_of_every_method_on_every_kind_of_pair(name, kind, pair):
    """Feature methods size their parts from the two networks' own stages and widths (FitNets' regressor,
    CRD's embeddings, C2KD's proxies, RKD's pooled vectors); a step runs, every trainable part gets a gradient,
    the teacher none; the deployable model is the student's architecture."""
    teacher_arch, student_arch = pair
    info = replace(INFO, arch=student_arch, teacher_arch=teacher_arch if kind else "resnet18")
    from test_registry_contract import batch, build

    if (name, pair) in REFUSED:
        with pytest.raises(UserError, match=REFUSED[name, pair]):
            METHODS[name].check(info, "depth", METHODS[name].Options())
        return
    method, teacher = build(name, kind, info)
    method.train()
    for epoch in (3, 9):  # early and late: a method in stages (MGDFR) trains other networks in each
        method.on_epoch_start(epoch, 10)
        total, _ = method.loss(batch(method), epoch)
        assert math.isfinite(float(total))
        total.backward()
    assert [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None] == []
    if teacher is not None:
        assert all(p.grad is None for p in teacher.parameters())
    for key in method.outputs():
        if key != FUSED:
            deployed = method.export(key)
            arch_of = ArchChoice.parse(info.arch).for_modality(key)
            assert type(deployed.encoder if hasattr(deployed, "encoder") else deployed.specific).__name__ == \
                type(get_arch(arch_of).build(1, (32, 32))).__name__


def test_a_multi_modal_teacher_of_two_architectures_fuses_through_a_declared_projection():
    from cmkd.methods.backbones import FusionClassifier

    info = replace(INFO, arch="rgb=resnet34,depth=mobilenet_v3_small")
    net = FusionClassifier({m: encoder_for(info, m) for m in info.channels}, 4).eval()
    assert set(net.project) == {"rgb"} and net.project["rgb"].out_features == 1024  # 512 -> the widest, 1024
    x = {m: torch.randn(2, c, 32, 32) for m, c in info.channels.items()}
    assert net(x).shape == (2, 4)
    equal = FusionClassifier({m: encoder_for(INFO, m) for m in INFO.channels}, 4)
    assert not hasattr(equal, "project")  # the paper's sum, no extra parameters
    with pytest.raises(UserError, match="one architecture for every modality"):
        net.forward_features(x, ("stage2",))


@pytest.mark.parametrize("method, arch, teacher, opts, message", [
    ("fitnets", "resnet8x4", "resnet18", {"stage": "stage4"}, "no stage 'stage4'"),
    ("fitnets", "resnet18", "resnet8x4", {}, "no regressor maps a student map of 2x2 onto a teacher map of 8x8"),
    ("discomkd", "rgb=resnet8x4,depth=wrn_16_2", "resnet18", {}, "one even pooled width"),
])
def test_a_pair_a_method_cannot_align_is_refused_at_check(method, arch, teacher, opts, message):
    cls = get_method(method)
    info = replace(replace(INFO, image_sizes={"rgb": (16, 16), "depth": (16, 16)}), arch=arch, teacher_arch=teacher)
    with pytest.raises(UserError, match=message):
        cls.check(info, "depth" if cls.single_modality else None, cls.Options(**opts))


# ---- the CLI -------------------------------------------------------------------------------------------
def cmkd(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cmkd", *args], capture_output=True, text=True, cwd=cwd)


TRAIN = ["train", "--dataset", "synthetic", "--data-opt", "n_samples=120", "--data-opt", "image_size=16",
         "--epochs", "1", "--batch-size", "32", "--quiet"]


@pytest.mark.parametrize("args, message", [
    (["--method", "student", "--modality", "rgb", "--arch", "resnet18x"], "unknown architecture 'resnet18x' (did you mean 'resnet18'?)"),
    (["--method", "student", "--modality", "rgb", "--arch", "vit_b_16", "--data-opt", "image_size=24"],
     "'vit_b_16' takes images with sides of at least 16 px and a multiple of 16; these are 24x24"),
    (["--method", "student", "--modality", "rgb", "--arch", "convnext_tiny"], "at least 32 px"),
    (["--method", "student", "--modality", "rgb", "--teacher-arch", "resnet34"], "learns from no teacher: drop --teacher-arch"),
    (["--method", "student", "--modality", "rgb", "--arch", "lidar=resnet34"], "names modality 'lidar', which the data set lacks"),
    (["--method", "fitnets", "--modality", "depth", "--arch", "resnet8x4", "--opt", "stage=stage4"], "no stage 'stage4'"),
    (["--method", "student", "--modality", "rgb", "--arch", "resnet34", "--width", "8"], "scales resnet18 only"),
])
def test_bad_architecture_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, args, message):
    from cmkd.harness.cli.main import main

    runs = tmp_path / "runs"
    assert main([*TRAIN, "--runs", str(runs), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cmkd: error:") and err.count("\n") == 1 and message in err, err
    assert not runs.exists()


def test_a_student_of_another_architecture_learns_from_a_teacher_of_another_and_deploys(tmp_path):
    """The teacher is found by its own architecture (a resnet18 teacher is not a resnet34 student's); the
    exported student's sidecar names its architecture; cmkd predict rebuilds nothing and reads it."""
    import numpy as np

    runs = str(tmp_path / "runs")
    missing = cmkd(*TRAIN, "--runs", runs, "--method", "kdv1", "--modality", "depth", "--arch", "mobilenet_v3_small",
                   "--teacher-arch", "resnet34")
    assert missing.returncode == 2 and "--arch resnet34" in missing.stderr  # the printed command trains the right teacher
    assert cmkd(*TRAIN, "--runs", runs, "--method", "student", "--modality", "rgb", "--arch", "resnet34").returncode == 0
    r = cmkd(*TRAIN, "--runs", runs, "--method", "kdv1", "--modality", "depth", "--arch", "mobilenet_v3_small",
             "--teacher-arch", "resnet34", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["spec"]["arch"] == "mobilenet_v3_small" and result["spec"]["teacher_arch"] == "resnet34"
    teacher = json.loads(open(f"{result['teacher']}/result.json").read())
    assert teacher["spec"]["arch"] == "resnet34" and teacher["spec"]["method"] == "student"
    cost = result["costs"]["depth"]
    assert cost["params"] == sum(p.numel() for p in Classifier(get_arch("mobilenet_v3_small").build(1, (16, 16)), 6).parameters())
    assert cost["flops"] > 0 and cost["latency_ms"] > 0 and cost["deploy_images_per_s"] > 0
    model = result["exports"]["depth"]
    sidecar = json.loads(open(model.replace(".pt2", ".json")).read())
    assert sidecar["arch"] == {"depth": "mobilenet_v3_small"}
    np.save(tmp_path / "x.npy", np.zeros((3, 1, 16, 16), dtype=np.float32))
    p = cmkd("predict", "--model", model, "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "p.csv"))
    assert p.returncode == 0, p.stderr
    assert len((tmp_path / "p.csv").read_text().strip().splitlines()) == 4  # a header and three rows


def test_cmkd_archs_lists_every_entry_with_counted_params_and_flops():
    r = cmkd("archs", "--channels", "1", "--image-size", "16")
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line and line.split()[0] in ARCHS}
    assert set(lines) | {"convnext_tiny", "lenet5"} == set(ARCHS)  # ConvNeXt and LeNet-5 refuse 16 px, on stderr
    assert "convnext_tiny" in r.stderr and "at least 32 px" in r.stderr and "lenet5" in r.stderr
    net = get_arch("resnet8x4").build(1, (16, 16))
    assert f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f}" in lines["resnet8x4"]


# ---- pretrained weights, local files only ----------------------------------------------------------------
@pytest.fixture(scope="module")
def r18_file(tmp_path_factory):
    """A torchvision ResNet-18 state dict, classifier included, as a user would save it."""
    path = tmp_path_factory.mktemp("weights") / "resnet18-f37072fd.pth"
    torch.manual_seed(3)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_pretrained_weights_initialise_the_trained_encoder_with_the_stem_adapted(r18_file):
    from cmkd.archs.weights import content_hash
    from cmkd.harness.engine.spec import TrainConfig, TrialSpec
    from cmkd.harness.engine.trial import load_pretrained

    spec = TrialSpec(dataset="synthetic", method="student", modality="depth", pretrained=str(r18_file),
                     train=TrainConfig(epochs=1))
    assert spec.pretrained_hash == content_hash(r18_file) and spec.trial_id() != spec.replace(
        pretrained="", pretrained_hash="").trial_id()
    method = get_method("student")(replace(INFO, image_sizes={"rgb": (16, 16), "depth": (16, 16)}), "depth",
                                   get_method("student").Options())
    assert load_pretrained(method, spec) == 1
    saved = torch.load(r18_file, weights_only=True)
    enc = method.net.encoder
    torch.testing.assert_close(enc.layer3[1].conv2.weight, saved["layer3.1.conv2.weight"])
    torch.testing.assert_close(enc.conv1.weight, saved["conv1.weight"].sum(1, keepdim=True))  # 1 channel: the RGB sum


def test_the_teacher_is_looked_up_by_its_pretrained_weights(r18_file):
    from cmkd.harness.engine.spec import TrialSpec
    from cmkd.harness.engine.teachers import teacher_spec

    student = TrialSpec(dataset="synthetic", method="kdv1", modality="depth", scenario="cross-modal",
                        teacher_pretrained=str(r18_file))
    teacher = teacher_spec(student, "cross-modal", INFO)
    assert teacher.pretrained_hash == student.teacher_pretrained_hash != ""
    assert teacher.trial_id() == TrialSpec(dataset="synthetic", method="student", modality="rgb",
                                           pretrained=str(r18_file)).trial_id()


def test_bad_pretrained_input_is_one_line_exit_2(tmp_path, capsys, monkeypatch, r18_file):
    from cmkd.harness.cli.main import main

    two = tmp_path / "two.pth"
    sd = torchvision.models.resnet18(weights=None).state_dict()
    sd["conv1.weight"] = sd["conv1.weight"][:, :2]
    torch.save(sd, two)
    pickle = tmp_path / "evil.pth"
    torch.save({"model": nn.Linear(2, 2)}, pickle)  # a pickled module, not tensors: never unpickled
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    cases = [(["--pretrained", str(tmp_path / "none.pth")], "does not exist; the file must be there (cmkd never downloads"),
             (["--arch", "resnet34", "--pretrained", str(r18_file)], "is not a resnet34 state dict: it lacks 'layer1.2.conv1.weight'"),
             (["--pretrained", str(two)], "holds a stem for 2 input channel(s); this modality has 1"),
             (["--pretrained", str(pickle)], "is not a state dict of tensors"),
             (["--pretrained", "hub"], f"no resnet18 weights in the torch hub cache (looked for {tmp_path}/torch-home/hub/checkpoints/resnet18-f37072fd.pth)"),
             (["--width", "16", "--pretrained", str(r18_file)], "another width?")]
    for args, message in cases:
        runs = tmp_path / "runs"
        assert main([*TRAIN, "--runs", str(runs), "--method", "student", "--modality", "depth", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("cmkd: error:") and err.count("\n") == 1 and message in err, err
        assert not runs.exists()


def test_weights_in_the_torch_hub_cache_count_as_local(tmp_path, monkeypatch, r18_file):
    import shutil

    from cmkd.archs.weights import content_hash, resolve

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(r18_file, tmp_path / "hub" / "checkpoints" / r18_file.name)
    assert content_hash(resolve("hub", "resnet18")) == content_hash(r18_file)


def test_the_printed_teacher_command_trains_the_teacher_of_that_architecture_and_weights(r18_file):
    import shlex

    from cmkd.harness.cli.main import build_parser, spec_from_args
    from cmkd.harness.engine.spec import TrialSpec
    from cmkd.harness.engine.teachers import teacher_spec, train_command

    student = TrialSpec(dataset="synthetic", method="kdv1", modality="depth", scenario="cross-modal",
                        arch="mobilenet_v3_small", teacher_arch="resnet18", teacher_pretrained=str(r18_file))
    for kind in ("cross-modal", "multi-modal"):
        tspec = teacher_spec(student, kind, INFO)
        parsed = spec_from_args(build_parser().parse_args(shlex.split(train_command(tspec, "runs"))[1:]))
        assert parsed.trial_id() == tspec.trial_id() and parsed.pretrained_hash == student.teacher_pretrained_hash


def test_bn_momentum_sets_every_trained_batchnorm_and_is_refused_out_of_range(capsys, tmp_path):
    from cmkd.harness.cli.main import main
    from cmkd.harness.engine.trial import set_bn_momentum

    info = replace(INFO, arch="mobilenet_v3_small")
    method = get_method("student")(info, "depth", get_method("student").Options())
    assert {m.momentum for m in method.modules() if isinstance(m, nn.BatchNorm2d)} == {0.01}  # torchvision's MobileNetV3
    assert set_bn_momentum(method, 0.1) > 10
    assert {m.momentum for m in method.modules() if isinstance(m, nn.BatchNorm2d)} == {0.1}
    assert main([*TRAIN, "--runs", str(tmp_path / "r"), "--method", "student", "--modality", "rgb", "--bn-momentum", "1"]) == 2
    assert "train.bn_momentum must lie in [0, 1)" in capsys.readouterr().err
