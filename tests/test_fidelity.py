"""Where the paper is silent, the defaults follow the authors' released code (issue 17); each switch
is checked against numbers computed independently of cmkd's own functions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cmkd.errors import UserError
from cmkd.harness.engine.spec import TrainConfig
from cmkd.methods import Batch, DataInfo
from cmkd.methods.backbones import Classifier, kaiming_conv1_
from cmkd.methods.ctkd import CTKD, CTKDOptions
from cmkd.methods.discomkd import DisCoMKD, DisCoMKDOptions
from cmkd.methods.kd_losses import grad_reverse


# ---- first convolution's initialisation ---------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3, 13])
def test_conv1_defaults_to_a_fresh_conv2d_as_the_authors_code(channels):
    torch.manual_seed(0)
    ours = Classifier(channels, 5).encoder.conv1.weight.detach()
    torch.manual_seed(1)
    fresh = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False).weight.detach()
    bound = 1 / math.sqrt(channels * 49)  # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert ours.abs().max() <= bound and fresh.abs().max() <= bound
    assert ours.std().item() == pytest.approx(fresh.std().item(), rel=0.05)
    assert ours.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)  # 0.048 for 3 channels, 0.082 for 1


@pytest.mark.parametrize("channels", [1, 3])
def test_kaiming_conv1_option_is_torchvisions_init(channels):
    torch.manual_seed(0)
    model = Classifier(channels, 5)
    assert kaiming_conv1_(model) == 1
    w = model.encoder.conv1.weight.detach()
    assert w.std().item() == pytest.approx(math.sqrt(2 / (64 * 49)), rel=0.05)  # fan_out: 0.025 whatever C


def test_conv1_init_and_split_rule_are_validated_train_options():
    assert TrainConfig().conv1_init == "official" and TrainConfig().split_rule == "official"
    with pytest.raises(UserError, match="conv1_init must be one of official, kaiming"):
        TrainConfig(conv1_init="xavier")
    with pytest.raises(UserError, match="split_rule must be one of official, exact"):
        TrainConfig(split_rule="0.8")


def test_the_engine_applies_the_kaiming_option_to_every_resnet(tmp_path):
    from helpers import tiny_spec

    from cmkd.harness.engine.trial import Engine, prepare

    spec = tiny_spec("discomkd", modality=None, train={"conv1_init": "kaiming"})
    engine = Engine(prepare(spec, runs_root=tmp_path), tmp_path)
    stds = [m.conv1.weight.std().item() for m in engine.method.modules() if hasattr(m, "conv1") and hasattr(m, "layer1")]
    assert len(stds) == 4 and all(s == pytest.approx(0.025, rel=0.1) for s in stds)
    default = Engine(prepare(tiny_spec("student"), runs_root=tmp_path / "d"), tmp_path / "d")
    assert default.method.net.encoder.conv1.weight.std().item() == pytest.approx(1 / math.sqrt(3 * 49 * 3), rel=0.05)


# ---- CTKD's reversal ramp ------------------------------------------------------------------------------
INFO = DataInfo("t", {"rgb": 3, "depth": 1}, {"rgb": (16, 16), "depth": (16, 16)}, 4, "rgb")


@pytest.mark.parametrize("from_one, expected", [
    (False, [0.0, 0.0954915, 0.3454915, 0.6545085, 0.9045085, 1.0, 1.0]),  # the DisCoM-KD authors (default)
    (True, [0.0954915, 0.3454915, 0.6545085, 0.9045085, 1.0, 1.0, 1.0]),  # CTKD's own code
])
def test_ctkd_lambda_sequence_per_option(from_one, expected):
    method = CTKD(INFO, "depth", CTKDOptions(lambda_count_from_one=from_one))
    seen = []
    for epoch in range(7):
        method.on_epoch_start(epoch, 300)
        seen.append(method.lam)
    # 1/2 (1 - cos(pi n / 5)) by hand
    assert seen == pytest.approx(expected, abs=1e-7)


def test_ctkd_temp_lr_zero_freezes_the_temperature_and_none_shares_the_students_lr():
    frozen = CTKD(INFO, "depth", CTKDOptions(temp_lr=0.0)).param_groups(1e-3)
    assert frozen[1]["lr"] == 0.0
    shared = CTKD(INFO, "depth", CTKDOptions()).param_groups(1e-3)
    assert shared[1]["lr"] == 1e-3


# ---- DisCoM-KD: the released code's loss ---------------------------------------------------------------
def released_code_loss(model: DisCoMKD, xf, xs, yf, ys) -> torch.Tensor:
    """The loss of ``main_DisCoM-KD.py`` written from its formulas: each term one nn.CrossEntropyLoss
    (mean) over the two modalities' rows concatenated; ones_like / zeros_like modality targets; the
    modality loss over the inf and irr heads of both modalities (4B rows); cosines of L2-normalised
    concatenated embeddings."""
    ce = nn.CrossEntropyLoss()
    f, s = model.branches["rgb"], model.branches["depth"]
    inv_f, inf_f, irr_f = f.features(xf)
    inv_s, inf_s, irr_s = s.features(xs)
    pred_f, pred_s = f.classify(inv_f, inf_f), s.classify(inv_s, inf_s)
    loss_cl = ce(torch.cat([pred_f, pred_s]), torch.cat([yf, ys]))
    discr_f, discr_s = model.discriminator(grad_reverse(inv_f, 1.0)), model.discriminator(grad_reverse(inv_s, 1.0))
    loss_adv = ce(torch.cat([discr_f, discr_s]), torch.cat([torch.ones_like(discr_f), torch.zeros_like(discr_s)]))
    dom_f = torch.cat([model.mod_inf(inf_f), model.mod_irr(irr_f)])
    dom_s = torch.cat([model.mod_inf(inf_s), model.mod_irr(irr_s)])
    loss_mod = ce(torch.cat([dom_f, dom_s]), torch.cat([torch.ones_like(dom_f), torch.zeros_like(dom_s)]))
    loss_aux = ce(torch.cat([model.aux(inf_f), model.aux(inf_s)]), torch.cat([yf, ys])) \
        + ce(torch.cat([model.aux(inv_f), model.aux(inv_s)]), torch.cat([yf, ys]))
    info = F.normalize(torch.cat([inf_f, inf_s]))
    useless = F.normalize(torch.cat([irr_f, irr_s]))
    shared = F.normalize(torch.cat([inv_f, inv_s]))
    loss_perp = (info * useless).sum(1).mean() + (info * shared).sum(1).mean()
    return loss_cl + loss_adv + loss_mod + loss_aux + loss_perp


def _batch(seed: int = 0, b: int = 6):
    g = torch.Generator().manual_seed(seed)
    xf, xs = torch.randn(b, 3, 16, 16, generator=g), torch.randn(b, 1, 16, 16, generator=g)
    yf, ys = torch.randint(0, 4, (b,), generator=g), torch.randint(0, 4, (b,), generator=g)
    return xf, xs, yf, ys


def test_released_code_preset_equals_the_released_scripts_loss_and_gradients():
    torch.manual_seed(0)
    opts = DisCoMKDOptions(preset="released-code")
    assert (opts.modality_targets, opts.reduction, opts.batches, opts.perp) == ("official", "concat-mean", "unpaired", "signed")
    model = DisCoMKD(INFO, None, opts).train()
    xf, xs, yf, ys = _batch()
    ours, parts = model.loss(Batch(x={"rgb": xf, "depth": xs}, y=None, y_by_modality={"rgb": yf, "depth": ys}), 0)
    g_ours = torch.autograd.grad(ours, list(model.parameters()), allow_unused=True)
    ref = released_code_loss(model, xf, xs, yf, ys)
    g_ref = torch.autograd.grad(ref, list(model.parameters()), allow_unused=True)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    names = [n for n, _ in model.named_parameters()]
    for n, a, b in zip(names, g_ours, g_ref):
        assert (a is None) == (b is None), n
        if a is not None:
            # float32 sums in another order through a ResNet: equal to 1e-5 of the gradient's norm
            assert (a - b).norm() <= 1e-5 * b.norm() + 1e-9, n


def test_the_paper_default_weighs_every_modality_term_as_a_sum():
    """The paper's sum over modalities: with equal batch sizes each term is 2x the released code's
    mean, except L_mod, which is 4x (its released mean runs over 4B rows)."""
    torch.manual_seed(0)
    opts_paper = DisCoMKDOptions(modality_targets="official")
    opts_code = DisCoMKDOptions(preset="released-code")
    model = DisCoMKD(INFO, None, opts_paper).train()
    xf, xs, yf, ys = _batch(1)
    batch = Batch(x={"rgb": xf, "depth": xs}, y=None, y_by_modality={"rgb": yf, "depth": ys})
    with torch.no_grad():
        _, paper = model.loss(batch, 0)
        model.options = opts_code
        _, code = model.loss(batch, 0)
    for term in ("cl", "adv", "aux", "perp"):
        assert float(paper[term]) == pytest.approx(2 * float(code[term]), rel=1e-5), term
    assert float(paper["mod"]) == pytest.approx(4 * float(code["mod"]), rel=1e-5)


def test_a_preset_refuses_a_conflicting_option_and_an_unknown_name():
    with pytest.raises(UserError, match="conflicts with preset 'released-code'"):
        DisCoMKDOptions(preset="released-code", batches="paired")
    with pytest.raises(UserError, match="option preset must be one of .*released-code.*got .paper-2."):
        DisCoMKDOptions(preset="paper-2")
    assert DisCoMKDOptions(preset="released-code", w_adv=0.5).w_adv == 0.5  # other options combine
