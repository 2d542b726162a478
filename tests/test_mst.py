"""MST-Distill: each stage's loss against a closed form or an independent float64 computation, the gate's
balance term against torch's KLDivLoss as the authors call it, the weight decay against a replay of the
authors' loop, the masking module's shape rule, which networks each stage trains (never the loaded
teacher), the masking modules' selection on validation data, best-epoch selection among stage-3 epochs
only, a resume, refusals, and end-to-end trials and a benchmark from a real teacher."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import method_with_teacher, tiny_spec, train_batch

from cmkd.errors import UserError
from cmkd.harness.engine.trial import run_trial
from cmkd.methods import teacher_method
from cmkd.methods.mst import MaskNet
from cmkd.methods.mst_losses import load_balance, mask_fit_loss, mutual_loss, routed_kd, stage3_weights, stage_ends

NARROW = {"width": 16}


def _kl64(p_logits, q_logits, t):
    """T^2 KL(softmax(p/T) || softmax(q/T)) per batch mean, in float64 from the definition."""
    p = torch.softmax(p_logits.double() / t, 1)
    q = torch.softmax(q_logits.double() / t, 1)
    return t * t * (p * (p.log() - q.log())).sum(1).mean()


def test_co_training_is_every_ce_plus_every_kl_both_ways_and_trains_both_sides():
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(5, 4, generator=g, requires_grad=True) for _ in range(3))
    y = torch.tensor([0, 1, 2, 3, 0])
    total, parts = mutual_loss({"student": a, "mm": b, "aux": c}, y, 4.0)
    nets = {"student": a, "mm": b, "aux": c}
    expect = sum(F.cross_entropy(v.double(), y) for v in nets.values())
    expect += sum(_kl64(other, own, 4.0) for n, own in nets.items() for o, other in nets.items() if o != n)
    assert float(total) == pytest.approx(float(expect), rel=1e-5)
    assert set(parts) == {"co_ce_student", "co_ce_mm", "co_ce_aux"}
    kl_only = mutual_loss({"x": a, "y": b}, y, 4.0)[0] - F.cross_entropy(a, y) - F.cross_entropy(b, y)
    ga, gb = torch.autograd.grad(kl_only, (a, b))
    assert ga.abs().sum() > 0 and gb.abs().sum() > 0  # nothing detached: both networks learn from each KL


def test_the_mask_fit_loss_targets_the_student_and_trains_only_the_masked_side():
    g = torch.Generator().manual_seed(1)
    masked = torch.randn(6, 5, generator=g, requires_grad=True)
    student = torch.randn(6, 5, generator=g, requires_grad=True)
    loss = mask_fit_loss(masked, student, 4.0)
    assert float(loss) == pytest.approx(float(_kl64(student, masked, 4.0)), rel=1e-5)
    loss.backward()
    assert masked.grad is not None and student.grad is None
    same = torch.randn(3, 5)
    assert float(mask_fit_loss(same, same, 4.0)) == pytest.approx(0.0, abs=1e-6)


def test_routing_distils_each_sample_from_its_top_k_and_gives_the_gate_no_gradient():
    g = torch.Generator().manual_seed(2)
    s = torch.randn(3, 4, generator=g, dtype=torch.float64)
    experts = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    probs = torch.tensor([[0.2, 0.6, 0.1, 0.05, 0.05], [0.5, 0.1, 0.3, 0.05, 0.05], [0.0, 0.0, 0.2, 0.1, 0.7]],
                         dtype=torch.float64, requires_grad=True)
    loss, top = routed_kd(s, experts, probs, 1, 4.0)
    assert top.flatten().tolist() == [1, 0, 4]
    chosen = torch.stack([experts[0, 1], experts[1, 0], experts[2, 4]])
    assert float(loss) == pytest.approx(float(_kl64(chosen, s, 4.0)), rel=1e-10)
    loss2, top2 = routed_kd(s, experts, probs, 2, 4.0)
    second = torch.stack([experts[0, 0], experts[1, 2], experts[2, 2]])
    assert top2[:, 1].tolist() == [0, 2, 2]
    assert float(loss2) == pytest.approx(float((_kl64(chosen, s, 4.0) + _kl64(second, s, 4.0)) / 2), rel=1e-10)
    assert not loss.requires_grad  # an index selection: the gate learns from the balance term only
    z = routed_kd(s, experts, probs, 1, 4.0, lskd=True)[0]
    std = lambda v: (v - v.mean(1, keepdim=True)) / (v.std(1, keepdim=True) + 1e-7)  # noqa: E731
    assert float(z) == pytest.approx(float(_kl64(std(chosen), std(s), 4.0)), rel=1e-8)


def test_the_balance_term_is_the_authors_kldivloss_call_and_zero_when_uniform():
    g = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(7, 4, generator=g, dtype=torch.float64), 1)
    mean = probs.mean(0)
    authors = torch.nn.KLDivLoss(reduction="batchmean")(mean.log(), torch.full_like(mean, 0.25))
    assert float(load_balance(probs, "KL")) == pytest.approx(float(authors), rel=1e-12)
    assert float(load_balance(torch.full((3, 4), 0.25), "KL")) == pytest.approx(0.0, abs=1e-7)
    imp = probs.sum(0)
    assert float(load_balance(probs, "CV")) == pytest.approx(float(imp.std() / imp.mean()), rel=1e-12)


def test_the_stage3_weights_replay_the_authors_decay_loop():
    w_kl, w_lb = 1.0, 1.0
    for epoch in range(65):
        assert stage3_weights(1.0, 1.0, epoch) == pytest.approx((w_kl, w_lb), rel=1e-12), epoch
        w_lb *= 0.9 if epoch % 10 == 0 else 1  # main-MST-Distill.py, after each stage-3 epoch
        w_kl *= 0.5 if epoch % 30 == 0 else 1


@pytest.mark.parametrize("n, co, mask, expect", [(3, 1, 1, (1, 2)), (10, 1, 1, (1, 2)), (10, 3, 3, (3, 6)),
                                                 (4, 3, 3, (1, 3)), (3, 5, 1, (1, 2))])
def test_every_stage_keeps_an_epoch(n, co, mask, expect):
    assert stage_ends(n, co, mask) == expect


def test_the_masking_module_has_the_authors_width_and_gates_each_channel():
    m = MaskNet(64, heads=3, factor=2, spatial=False)
    assert m.hidden == 64 // 6 * 3 == 30
    assert m.embed.weight.shape == (30 * 64, 64)
    out = m(torch.randn(5, 64))
    assert out.shape == (5, 64) and bool(((out > 0) & (out < 1)).all())
    spatial = MaskNet(16, heads=2, factor=2, spatial=True)
    assert spatial(torch.randn(3, 16, 4, 4)).shape == (3, 16)


def _grads(module):
    return {p.grad is not None for p in module.parameters()}


def test_each_stage_trains_its_own_parts_and_never_the_loaded_teacher(teachers):
    method, data, split = method_with_teacher(teachers, "mst", scenario="multi-modal")
    batch = train_batch(data, split)
    assert method.specialists == ["mm-map", "mm-pool", "aux_rgb-map", "aux_rgb-pool"]
    trained = {1: ("net", "teachers"), 2: ("masks",), 3: ("net", "gate")}
    for epoch, stage in ((0, 1), (1, 2), (2, 3)):
        method.train()
        method.on_epoch_start(epoch, 3)
        total, parts = method.loss(batch, epoch)
        total.backward()
        for part in ("net", "teachers", "masks", "gate"):
            assert _grads(getattr(method, part)) == {part in trained[stage]}, (stage, part)
        assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
        assert _grads(method.best_masks) == {False}
        method.zero_grad(set_to_none=True)
    assert set(parts) == {"ce", "kd", "balance"}
    assert sum(method.epoch_metrics().values()) == pytest.approx(1.0)


def test_loaded_start_copies_the_teacher_and_scratch_does_not(teachers):
    loaded, _, _ = method_with_teacher(teachers, "mst", scenario="multi-modal", teacher_init="loaded")
    scratch, _, _ = method_with_teacher(teachers, "mst", scenario="multi-modal")
    ref = loaded.teacher.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.teachers["mm"].state_dict().items())
    assert not torch.equal(scratch.teachers["mm"].head.weight, ref["head.weight"])


def test_the_masking_modules_are_kept_only_when_validation_improves(teachers):
    method, data, split = method_with_teacher(teachers, "mst", scenario="multi-modal")
    method.on_epoch_start(1, 3)
    assert method.wants_validation_pass(1, 3) and not method.wants_validation_pass(2, 3)
    val = train_batch(data, split, n=8)
    method.eval()
    with torch.no_grad():
        method.validation_pass([val])
    first = float(method.best_mask_loss)
    assert math.isfinite(first)
    kept = {k: v.clone() for k, v in method.best_masks.state_dict().items()}
    with torch.no_grad():
        for p in method.masks.parameters():
            p.add_(1.0)
        method.best_mask_loss.fill_(-1.0)  # nothing can beat it: the copy must stay
        method.validation_pass([val])
    assert all(torch.equal(v, kept[k]) for k, v in method.best_masks.state_dict().items())
    method.best_mask_loss.fill_(float("inf"))
    with torch.no_grad():
        method.validation_pass([val])
    assert all(torch.equal(v, method.masks.state_dict()[k]) for k, v in method.best_masks.state_dict().items())


def test_bad_options_and_budgets_are_refused_before_any_compute(teachers):
    from cmkd.harness.engine.data import data_info, load_data
    from cmkd.methods import DataInfo, get_method
    from helpers import TINY_DATA

    cls = get_method("mst")
    info = data_info(load_data("synthetic", None, TINY_DATA))
    with pytest.raises(UserError, match="option k must be at most its 4 specialised teachers, got 5"):
        cls.check(info, "depth", cls.Options(k=5))
    with pytest.raises(UserError, match="narrower than hidden_factor x heads"):
        cls.check(info, "depth", cls.Options(heads=400))
    vectors = DataInfo("vectors", {"a": 16, "b": 8}, {}, 4, "a", arch="mlp", teacher_arch="mlp")  # no map to mask
    with pytest.raises(UserError, match=r"has no stage map: pass .*mask_layers=1"):
        cls.check(vectors, "b", cls.Options())
    cls.check(vectors, "b", cls.Options(mask_layers=1))
    assert cls.masked_layers(vectors, "b", cls.Options(mask_layers=1)) == ["pool"]
    with pytest.raises(UserError, match=r"method 'mst' needs 3 epochs or more, got 2"):
        run_trial(tiny_spec(method="mst", modality="depth", scenario="multi-modal", epochs=2), runs_root="/nonexistent")


@pytest.fixture(scope="module")
def mm_teacher3(tmp_path_factory):
    """A 3-epoch multi-modal teacher (a 3-epoch student looks one up) at width 16: at the paper's 64 the
    masking modules hold 336 M weights, the checkpoint gigabytes."""
    root = tmp_path_factory.mktemp("mst_teacher")
    run_trial(tiny_spec(method=teacher_method("multi-modal").name, modality=None, epochs=3, train=NARROW), runs_root=root)
    return root


@pytest.mark.parametrize("lskd", [False, True], ids=["orig", "lskd"])
def test_mst_trains_end_to_end_and_selects_among_stage3_epochs(mm_teacher3, lskd):
    spec = tiny_spec(method="mst", modality="depth", scenario="multi-modal", epochs=3, method_options={"lskd": lskd},
                     train=NARROW)
    res = run_trial(spec, runs_root=mm_teacher3)
    assert res.epochs_run == 3 and res.variant == ("lskd" if lskd else "orig")
    assert res.outputs["depth"]["best_epoch"] == 3  # epochs 1-2 (co-training, masking) are never selected
    assert "train/co_ce_mm" in res.history[0] and "train/mask_kl" in res.history[1] and "train/kd" in res.history[2]
    assert sum(v for k, v in res.history[2].items() if k.startswith("route_")) == pytest.approx(1.0)


def test_a_resume_after_the_masking_stage_gives_the_same_result(tmp_path):
    class Stop(Exception):
        pass

    spec = tiny_spec(method="mst", modality="rgb", scenario="multi-modal", epochs=4, train=NARROW)
    teachers = tmp_path / "runs"
    run_trial(tiny_spec(method=teacher_method("multi-modal").name, modality=None, epochs=4, train=NARROW),
              runs_root=teachers)
    whole = run_trial(spec, runs_root=teachers, out_dir=tmp_path / "whole")
    seen = []

    def stop(report):
        seen.append(report)
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        run_trial(spec, runs_root=teachers, out_dir=tmp_path / "stopped", on_epoch=stop)
    resumed = run_trial(spec, runs_root=teachers, out_dir=tmp_path / "stopped")
    assert resumed.resumed_from == [2]
    assert resumed.outputs["rgb"]["test_f1"] == whole.outputs["rgb"]["test_f1"]
    assert [h.get("route_mm-map") for h in resumed.history] == [h.get("route_mm-map") for h in whole.history]


@pytest.mark.ray
def test_mst_runs_in_a_bench_and_fills_its_rows(ray_session, tmp_path, capsys):
    from cmkd.harness.cli.main import main

    out = tmp_path / "b"
    code = main(["bench", "--profile", "smoke", "--out", str(out), "--set", "methods=['mst']", "--set", "ablations=[]",
                 "--set", "scenarios=['multi-modal']", "--set", "train.width=16", "--epochs", "3"])
    assert code == 0, capsys.readouterr().err
    md = (out / "tables" / "tables.md").read_text()
    table2 = md.split("Table 2")[1].split("Table 3")[0]
    lines = table2.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| MST-Distill"))
    cells = [c.strip() for row in lines[at:at + 2] for c in row.strip("|").split("|")[2:]]
    assert cells and all(c not in ("", "-") for c in cells), lines[at:at + 2]  # ORIG and w/ LSKD, every column


def test_one_trunk_pass_gives_each_specialised_teacher_as_its_own_forward_would():
    """Independent of ``pooled_gated``: a forward hook on each encoder's last stage that masks the map (one
    network pass per specialist), and the plain pooled vector masked before the head."""
    from cmkd.harness.engine.data import data_info, load_data
    from cmkd.methods import get_method
    from helpers import TINY_DATA

    data = load_data("synthetic", None, {**TINY_DATA, "image_size": 64})  # 2 x 2 last maps: the spatial module
    info = data_info(data, width=16)
    cls = get_method("mst")
    torch.manual_seed(0)
    method = cls(info, "depth", cls.Options(), None, "multi-modal").eval()
    x = {m: torch.from_numpy(a[:5]) for m, a in data.modalities.items()}

    def by_hand(net_name: str, layer: str):
        net, masks = method.teachers[net_name], method.masks[f"{net_name}-{layer}"]
        encoders = dict(net.encoders) if hasattr(net, "encoders") else {net_name.removeprefix("aux_"): net.encoder}
        handles = [enc.get_submodule(enc.stage_modules["stage4"]).register_forward_hook(
            lambda _m, _i, out, mm=m: masks[mm](out)[:, :, None, None] * out) for m, enc in encoders.items()
            if layer == "map"]
        try:
            if hasattr(net, "encoders"):
                pooled = sum(enc(x[m]) for m, enc in net.encoders.items())
            else:
                pooled = net.encoder(x[net_name.removeprefix("aux_")])
        finally:
            for h in handles:
                h.remove()
        return net.head(masks(pooled) * pooled if layer == "pool" else pooled)

    with torch.no_grad():
        ours = method._specialists(x, method.masks)
        assert sorted(ours) == sorted(method.specialists)
        for key, logits in ours.items():
            torch.testing.assert_close(logits, by_hand(*key.rsplit("-", 1)), rtol=1e-5, atol=1e-5)
    assert method.masks["mm-map"]["rgb"].reduce is not None  # a 2 x 2 map: reduced, not flattened
