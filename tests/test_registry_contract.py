"""Contract tests over the registries, as timm tests every registered model: a method or data set
registered later is checked by these with no new test code."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from cmkd.datasets import DATASETS, get_dataset
from cmkd.errors import UserError
from cmkd.methods import FUSED, METHODS, Batch, DataInfo, get_method, teacher_method
from cmkd.methods.options import schema

INFO = DataInfo("contract", {"rgb": 3, "depth": 1}, {"rgb": (32, 32), "depth": (32, 32)}, 4, "rgb")
#: the same data description with the built-in benchmark's narrow test-bed network (train.width = 8)
NARROW = replace(INFO, width=8)


def tiny_teacher(kind: str, info: DataInfo = INFO) -> torch.nn.Module:
    cls = teacher_method(kind)
    modality = info.rich if cls.single_modality else None
    info = replace(info, arch=info.teacher_arch)  # the teacher's own trial: its network is the student's teacher_arch
    teacher = cls(info, modality, cls.Options()).export(modality or FUSED).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def build(name: str, kind: str | None, info: DataInfo = INFO):
    cls = get_method(name)
    modality = "depth" if cls.single_modality else None
    options = cls.Options()
    cls.check(info, modality, options)
    teacher = tiny_teacher(kind, info) if kind else None
    torch.manual_seed(0)
    method = cls(info, modality, options, teacher, kind)
    method.on_train_split(torch.arange(8) % INFO.n_classes)  # the engine's call: a training split of 8 samples
    return method, teacher


def batch(method, n: int = 4) -> Batch:
    g = torch.Generator().manual_seed(1)
    x = {m: torch.randn(n, c, 32, 32, generator=g) for m, c in INFO.channels.items()}
    y = torch.randint(0, INFO.n_classes, (n,), generator=g)
    strong = {m: v + 0.1 for m, v in x.items()} if method.wants_strong_view() else None
    if method.paired_batches():
        return Batch(x=x, y=y, strong=strong, index=torch.arange(n))
    return Batch(x=x, y=None, y_by_modality={m: y.roll(i) for i, m in enumerate(x)}, strong=strong)


CASES = [(name, kind) for name, cls in sorted(METHODS.items()) for kind in (cls.teacher_kinds or (None,))]


@pytest.mark.parametrize("info", [INFO, NARROW], ids=["width64", "width8"])
@pytest.mark.parametrize("name, kind", CASES, ids=[f"{n}-{k or 'no-teacher'}" for n, k in CASES])
def test_a_method_trains_predicts_and_exports(name, kind, info):
    method, teacher = build(name, kind, info)
    method.train()
    for epoch in (3, 9):  # early and late: a method in stages (MGDFR) trains other networks in each
        method.on_epoch_start(epoch, 10)
        total, parts = method.loss(batch(method), epoch)
        assert total.dim() == 0 and math.isfinite(float(total))
        assert all(v.dim() == 0 and math.isfinite(float(v)) for v in parts.values()), parts
        total.backward()  # gradients add up over the two steps
    trainable = [(n, p) for n, p in method.named_parameters() if p.requires_grad]
    assert trainable and [n for n, p in trainable if p.grad is None] == []
    assert method.selectable(9, 10)  # the last epoch can always be an output's best epoch
    if teacher is not None:  # the teacher is frozen and not the method's
        assert all(p.grad is None for p in teacher.parameters())
        assert not {id(p) for p in teacher.parameters()} & {id(p) for _, p in trainable}
    method.eval()
    x = batch(method).x
    with torch.no_grad():
        predicted = method.predict(x)
        assert sorted(predicted) == sorted(method.outputs())
        for key, logits in predicted.items():
            assert logits.shape == (4, INFO.n_classes)
            exported = method.export(key).eval()
            torch.testing.assert_close(exported(x if key == FUSED else x[key]), logits)


@pytest.mark.parametrize("name, kind", CASES, ids=[f"{n}-{k or 'no-teacher'}" for n, k in CASES])
def test_a_method_computes_in_float64_when_the_trial_does(name, kind):
    """``train.precision = "float64"``: weights, teacher and inputs in float64, and no loss term cast down to
    float32 on the way (that rounding would make the number the CPU's again)."""
    method, teacher = build(name, kind, NARROW)
    method.to(torch.float64).train()
    if teacher is not None:
        teacher.to(torch.float64)
    b = batch(method)
    b = replace(b, x={m: v.double() for m, v in b.x.items()},
                strong={m: v.double() for m, v in b.strong.items()} if b.strong else None)
    method.on_epoch_start(9, 10)
    total, parts = method.loss(b, 9)
    assert total.dtype == torch.float64 and all(v.dtype == torch.float64 for v in parts.values()), \
        {k: v.dtype for k, v in parts.items() if v.dtype != torch.float64}
    total.backward()
    assert all(p.grad.dtype == torch.float64 for p in method.parameters() if p.grad is not None)
    with torch.no_grad():
        assert all(v.dtype == torch.float64 for v in method.eval().predict(b.x).values())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_methods_options_round_trip_and_render(name):
    cls = get_method(name)
    defaults = cls.Options()
    assert cls.Options.from_dict(defaults.to_dict(), name) == defaults
    rows = schema(cls.Options)
    assert [r["name"] for r in rows] == list(defaults.to_dict())
    assert all(r["type"] for r in rows)
    with pytest.raises(UserError, match="has no option"):
        cls.Options.from_dict({"no_such_option": 1}, name)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_a_data_set_declares_its_modalities_and_refuses_bad_input(name, tmp_path):
    cls = DATASETS[name]
    adapter = cls(root=None)
    channels = adapter.modality_channels()
    assert channels and all(isinstance(c, int) for c in channels.values())
    if cls.rich:
        assert cls.rich in channels
    with pytest.raises(UserError, match="has no option 'no_such_option'"):
        get_dataset(name, no_such_option=1)
    if name != "synthetic":  # a data set read from files names what is missing
        with pytest.raises(UserError):
            cls(root=str(tmp_path / "missing")).check()
    for key, default in cls.default_options.items():  # every option is type-checked
        if isinstance(default, (bool, int, float)):
            with pytest.raises(UserError, match=f"data-set option {key} must be"):
                get_dataset(name, **{key: "not-a-value"})


def test_the_contract_catches_a_method_that_breaks_it():
    """A registered method whose export does not match its predictions fails the contract."""
    from cmkd.methods.student import Student

    class Broken(Student):
        def export(self, key):
            return torch.nn.Sequential(self.net, torch.nn.Tanh())

    METHODS.register("broken")(Broken)
    try:
        with pytest.raises(AssertionError):
            test_a_method_trains_predicts_and_exports("broken", None, INFO)
    finally:
        METHODS.unregister("broken")


def test_one_broken_method_does_not_break_the_listing(capsys):
    from dataclasses import dataclass

    from cmkd.harness.cli.main import main
    from cmkd.methods.base import Method, MethodOptions

    @dataclass(frozen=True)
    class BadOptions(MethodOptions):
        rate: float = float("nan")  # an invalid default: constructing the options fails

    class Bad(Method):
        Options = BadOptions

    METHODS.register("bad-method")(Bad)
    try:
        assert main(["methods"]) == 0
    finally:
        METHODS.unregister("bad-method")
    out, err = capsys.readouterr()
    assert "kdv1" in out and "discomkd" in out and "bad-method" not in out
    assert "method bad-method: UserError: option rate must be a finite number" in err


@pytest.mark.parametrize("name", sorted(METHODS))
def test_declarations_are_consistent(name):
    cls = get_method(name)
    assert cls.role() in ("reference", "distilled", "standalone")
    if cls.ablations:  # run through the `ablation` option, each into Table 3 or 4
        from dataclasses import fields

        assert "ablation" in {f.name for f in fields(cls.Options)}
        assert all(t in (3, 4) and label for t, label in cls.ablations.values())
        for a in cls.ablations:
            assert cls.variant(cls.Options.from_dict({"ablation": a}, name)) == a
    assert cls.epoch_cost(INFO) > 0
