"""Every KD loss against the reference vectors (kd-methods.md section 7) and an independent numpy
computation in float64 on random logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmkd.methods import kd_losses as L

S = torch.tensor([[1.0, 2.0, 0.5], [0.2, -1.0, 1.5]], dtype=torch.float64)
T_ = torch.tensor([[2.0, 3.5, -1.0], [0.0, -2.0, 3.0]], dtype=torch.float64)
Y = torch.tensor([1, 2])
S_STRONG = torch.tensor([[0.5, 1.0, 1.0], [1.0, 0.0, 0.5]], dtype=torch.float64)
T_STRONG = torch.tensor([[1.0, 2.5, 0.0], [0.5, -1.0, 2.0]], dtype=torch.float64)
TOL = 1e-5


def close(value, expected, tol=TOL):
    assert float(torch.as_tensor(value).detach()) == pytest.approx(expected, abs=tol)


# ---- V1 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("temp, expected", [(1, 0.144500), (2, 0.406023), (3, 0.529725), (4, 0.588628),
                                           (5, 0.620554), (6, 0.639804)])
def test_kd_vectors(temp, expected):
    close(L.kd_loss(S, T_, temp), expected)


def test_hinton_combinations():
    total, parts = L.hinton_loss(S, T_, Y, alpha=0.0, temperature=1.0)
    close(total, 0.144500)  # KDv1 at T 1 (MFH)
    total, _ = L.hinton_loss(S, T_, Y, alpha=0.5, temperature=1.0)
    close(total, 0.264222)  # KDv2 at T 1
    close(0.1 * parts["ce"] + 0.9 * L.kd_loss(S, T_, 4), 0.568160)
    close(parts["ce"], 0.383944)


# ---- V2 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("temp, tckd, nckd", [(1, 0.114279, 0.173959), (2, 0.290946, 0.326288), (4, 0.390231, 0.399879)])
def test_dkd_vectors(temp, tckd, nckd):
    a, b = L.dkd_terms(S, T_, Y, temp)
    close(a, tckd)
    close(b, nckd)


@pytest.mark.parametrize("alpha, beta, first, later", [(1, 8, 0.563407, 3.973205), (1, 2, 0.443443, 1.573932),
                                                      (1, 6, 0.523419, 3.173447)])
def test_dkd_totals_with_mdistiller_warmup(alpha, beta, first, later):
    ce = torch.nn.functional.cross_entropy(S, Y)
    for epoch, expected in ((0, first), (25, later)):
        w = L.dkd_warmup(epoch, 20, count_from_one=True)
        close(ce + w * L.dkd_loss(S, T_, Y, alpha, beta, 4.0), expected)
    assert L.dkd_warmup(0, 20) == 0.0  # the DisCoM-KD authors count from 0


# ---- V3 --------------------------------------------------------------------------------------
def test_ctkd_temperature_gradient_and_schedule():
    theta = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    lam = L.ctkd_lambda(1, 10)
    close(lam, 0.024472)
    temp = L.ctkd_temperature(theta, lam)
    close(temp, 15.621172)
    kd = L.kd_loss(S, T_, temp)
    close(kd, 0.685762)
    total = 0.1 * torch.nn.functional.cross_entropy(S, Y) + 0.9 * kd
    close(total, 0.655580)
    total.backward()
    assert theta.grad.item() == pytest.approx(-1.190339e-04, rel=1e-4)
    # without the GRL the gradient is +4.864136e-03: the reversal flips and scales it by lambda
    theta2 = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    (0.1 * torch.nn.functional.cross_entropy(S, Y) + 0.9 * L.kd_loss(S, T_, L.ctkd_temperature(theta2, -1.0))).backward()
    assert theta2.grad.item() == pytest.approx(4.864136e-03, rel=1e-5)
    expected = [0.024472, 0.095492, 0.206107, 0.345492, 0.5, 0.654508, 0.793893, 0.904508, 0.975528, 1.0, 1.0]
    assert [round(L.ctkd_lambda(n, 10), 6) for n in range(1, 12)] == expected


@pytest.mark.parametrize("temp, value, grad", [(1, 0.144500, 3.186117e-01), (2, 0.406023, 1.805867e-01),
                                              (4, 0.588628, 4.185453e-02), (8, 0.661093, 7.348688e-03),
                                              (21, 0.690940, 6.713319e-04)])
def test_kd_temperature_sweep_and_derivative(temp, value, grad):
    t = torch.tensor(float(temp), dtype=torch.float64, requires_grad=True)
    kd = L.kd_loss(S, T_, t)
    kd.backward()
    close(kd, value)
    # relative 1e-4: at T = 21 the reference's 6.713319e-04 differs from a float64 finite difference
    # (6.713167e-04) by 2e-5 relative, ours (6.713179e-04) agrees with the finite difference
    assert t.grad.item() == pytest.approx(grad, rel=1e-4)
    h = 1e-5
    fd = (L.kd_loss(S, T_, temp + h) - L.kd_loss(S, T_, temp - h)) / (2 * h)
    assert t.grad.item() == pytest.approx(float(fd), rel=1e-5)


def test_ctkd_with_dkd_is_finite_and_matches():
    theta = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    temp = L.ctkd_temperature(theta, 1.0)
    tckd, nckd = L.dkd_terms(S, T_, Y, temp)
    close(tckd, 0.419097)
    close(nckd, 0.428492)
    total = torch.nn.functional.cross_entropy(S, Y) + tckd + 2 * nckd
    close(total, 1.660024)
    total.backward()
    assert torch.isfinite(theta.grad)  # the "-1000 masking" version goes NaN here


# ---- V4 --------------------------------------------------------------------------------------
def test_mlkd_masks():
    m, n = L.mlkd_confidence_masks(T_)
    assert m.tolist() == [1.0, 0.0] and n.tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("temp, kd_w, kd_s, cc, bc", [(2, 0.406023, 0.535423, 0.037930, 0.050062),
                                                     (3, 0.529725, 0.556240, 0.012278, 0.016884),
                                                     (6, 0.639804, 0.563514, 0.001039, 0.001511)])
def test_mlkd_components(temp, kd_w, kd_s, cc, bc):
    close(L.kd_loss(S, T_, temp), kd_w)
    close(L.kd_loss(S_STRONG, T_STRONG, temp), kd_s)
    close(L.class_correlation_loss(S, T_, temp), cc)
    close(L.batch_correlation_loss(S, T_, temp), bc)


def test_mlkd_reference_totals():
    total, p = L.mlkd_loss(S, T_, S_STRONG, T_STRONG, Y, t0=4, ce_weight=0.1, kd_weight=0.9)
    for k, v in {"ce": 0.145309, "kd": 3.707475, "kd_weak": 1.253131, "kd_strong": 2.454344, "cc": 0.034763,
                 "bc": 0.035092}.items():
        close(p[k], v)
    close(total, 3.922638)
    total, p = L.mlkd_loss(S, T_, S_STRONG, T_STRONG, Y, t0=1, ce_weight=0.5, kd_weight=0.5)
    close(total, 2.695626)
    close(p["cc"], 0.044969)


# ---- V5 --------------------------------------------------------------------------------------
def test_lskd_vectors():
    zs, zt = L.standardize(S), L.standardize(T_)
    np.testing.assert_allclose(zs.numpy(), [[-0.218218, 1.091089, -0.872871], [-0.026660, -0.986404, 1.013063]], atol=TOL)
    np.testing.assert_allclose(zt.numpy(), [[0.218218, 0.872872, -1.091089], [-0.132453, -0.927173, 1.059626]], atol=TOL)
    for temp, expected in [(1, 0.022002), (2, 0.024547), (3, 0.024990), (4, 0.025130), (5, 0.025188), (6, 0.025215)]:
        close(L.kd_loss(zs, zt, temp), expected)
    close(0.1 * torch.nn.functional.cross_entropy(S, Y) + 9 * L.kd_loss(zs, zt, 2), 0.259317)
    # the biased std (wrong convention) gives another number: the test would catch it
    biased = lambda v: (v - v.mean(1, keepdim=True)) / (v.std(1, keepdim=True, unbiased=False) + 1e-7)  # noqa: E731
    close(L.kd_loss(biased(S), biased(T_), 2), 0.036192)
    assert abs(L.kd_loss(biased(S), biased(T_), 2) - L.kd_loss(zs, zt, 2)) > 0.01


def test_lskd_with_dkd_ctkd_and_mlkd():
    zs, zt = L.standardize(S), L.standardize(T_)
    tckd, nckd = L.dkd_terms(zs, zt, Y, 2)
    close(tckd, 0.010772)
    close(nckd, 0.026485)
    ce = torch.nn.functional.cross_entropy(S, Y)
    close(ce + L.dkd_loss(zs, zt, Y, 9, 72, 2), 2.387832)
    close(ce + 0.05 * L.dkd_loss(zs, zt, Y, 9, 72, 2), 0.484138)
    close(L.kd_loss(zs, zt, L.ctkd_temperature(torch.tensor(1.0, dtype=torch.float64), 0.0)), 0.025242)
    total, p = L.mlkd_loss(S, T_, S_STRONG, T_STRONG, Y, t0=2, ce_weight=0.1, kd_weight=9, lskd=True)
    for k, v in {"ce": 0.145309, "kd": 13.016953, "kd_weak": 0.560188, "kd_strong": 12.456765, "cc": 0.547400,
                 "bc": 0.546682}.items():
        close(p[k], v)
    close(total, 14.256344)


def test_lskd_rows_have_zero_mean_unit_std():
    x = torch.randn(32, 10, dtype=torch.float64) * 5 + 3
    z = L.standardize(x)
    np.testing.assert_allclose(z.mean(1).numpy(), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(1).numpy(), 1, atol=1e-6)


# ---- independent float64 numpy computation on random logits -------------------------------------
def _softmax(x, T):
    e = np.exp(x / T - (x / T).max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.fixture
def random_logits():
    rng = np.random.default_rng(7)
    return rng.normal(scale=3, size=(16, 10)), rng.normal(scale=3, size=(16, 10)), rng.integers(0, 10, 16)


def test_kd_and_dkd_match_numpy(random_logits):
    s, t, y = random_logits
    ts, tt, ty = torch.from_numpy(s), torch.from_numpy(t), torch.from_numpy(y)
    for T in (1.0, 4.0):
        ps, pt = _softmax(s, T), _softmax(t, T)
        kl = (pt * np.log(pt / ps)).sum(1)
        close(L.kd_loss(ts, tt, T), T * T * kl.mean(), 1e-9)
        # DKD by dropping the target column
        rows = np.arange(len(y))
        bs = np.stack([ps[rows, y], 1 - ps[rows, y]], 1)
        bt = np.stack([pt[rows, y], 1 - pt[rows, y]], 1)
        tckd = T * T * (bt * np.log(bt / bs)).sum(1).mean()
        mask = np.ones_like(s, bool)
        mask[rows, y] = False
        qs = _softmax(s[mask].reshape(len(y), -1), T)
        qt = _softmax(t[mask].reshape(len(y), -1), T)
        nckd = T * T * (qt * np.log(qt / qs)).sum(1).mean()
        a, b = L.dkd_terms(ts, tt, ty, T)
        close(a, tckd, 1e-9)
        close(b, nckd, 1e-9)
        # the decomposition identity KL = TCKD + (1 - p_t,target) NCKD, per sample
        kl_i = L.kl_per_sample(ts, tt, T).numpy()
        per_t = (bt * np.log(bt / bs)).sum(1)
        per_n = (qt * np.log(qt / qs)).sum(1)
        np.testing.assert_allclose(kl_i, per_t + (1 - pt[rows, y]) * per_n, atol=1e-9)


def test_mlkd_matches_numpy(random_logits):
    s, t, y = random_logits
    rng = np.random.default_rng(8)
    s2, t2 = s + rng.normal(size=s.shape), t + rng.normal(size=t.shape)
    B, C = s.shape

    def kd(a, b, T):
        pa, pb = _softmax(a, T), _softmax(b, T)
        return T * T * (pb * np.log(pb / pa)).sum(1).mean()

    def cc(a, b, T):
        qa, qb = _softmax(a, T), _softmax(b, T)
        return ((qb.T @ qb - qa.T @ qa) ** 2).sum() / C

    def bc(a, b, T):
        qa, qb = _softmax(a, T), _softmax(b, T)
        return ((qb @ qb.T - qa @ qa.T) ** 2).sum() / B

    p1 = _softmax(t, 1)
    conf = p1.max(1)
    mbar = (conf <= np.percentile(conf, 50)).mean()
    k = p1.sum(0)
    nbar = (k <= np.percentile(k, 50)).mean()
    temps = [4.0, 3.0, 5.0, 2.0, 6.0]
    ce = lambda a: -np.log(_softmax(a, 1)[np.arange(B), y]).mean()  # noqa: E731
    expected = 0.1 * (ce(s) + ce(s2)) + 0.9 * (
        sum(mbar * kd(s, t, T) for T in temps)
        + kd(s2, t2, 4) + kd(s2, t2, 3) + kd(s2, t2, 5) + kd(s, t, 2) + kd(s, t, 6)
        + sum(nbar * cc(s, t, T) for T in temps) + sum(mbar * bc(s, t, T) for T in temps))
    total, _ = L.mlkd_loss(*(torch.from_numpy(v) for v in (s, t, s2, t2)), torch.from_numpy(y))
    close(total, expected, 1e-9)


def test_mlkd_discomkd_code_matches_numpy(random_logits):
    s, t, y = random_logits
    B, C = s.shape
    ce = -np.log(_softmax(s, 1)[np.arange(B), y]).mean()
    expected = ce
    for T in (2.0, 3.0, 4.0, 5.0, 6.0):
        ps, pt = _softmax(s, T), _softmax(t, T)
        expected += (ps * (np.log(ps) - pt)).mean()  # probabilities where log-probabilities belong
        expected += ((ps @ ps.T - pt @ pt.T) ** 2).sum() / B + ((ps.T @ ps - pt.T @ pt) ** 2).sum() / C
    total, _ = L.mlkd_discomkd_code_loss(torch.from_numpy(s), torch.from_numpy(t), torch.from_numpy(y))
    close(total, expected, 1e-9)


def test_grad_reverse_flips_and_scales():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    (L.grad_reverse(x, 0.3) * torch.tensor([2.0, 5.0])).sum().backward()
    assert x.grad.tolist() == pytest.approx([-0.6, -1.5])


def test_dkd_with_a_saturated_teacher_is_finite_and_matches_the_reference_in_float64():
    """A teacher logit gap over ~104 T underflows its non-target mass to 0 in float32: bt * log(bt)
    was NaN; mdistiller's kl_div (target * (log target - input), 0 log 0 = 0) is finite."""
    import numpy as np
    import torch

    student = torch.tensor([[1.0, 0.5, -0.3, 0.2], [0.1, 2.0, 0.0, -1.0]])
    teacher = torch.tensor([[200.0, 0.0, 0.0, 0.0], [0.0, 150.0, -3.0, 1.0]])
    target = torch.tensor([0, 1])
    tckd, nckd = L.dkd_terms(student, teacher, target, 1.0)
    assert torch.isfinite(tckd) and torch.isfinite(nckd)

    def ref(s, t, y, T):  # mdistiller's DKD formulas in float64 numpy
        def softmax(z):
            e = np.exp(z - z.max(1, keepdims=True))
            return e / e.sum(1, keepdims=True)
        gt = np.eye(s.shape[1], dtype=bool)[y]
        ps, pt = softmax(s / T), softmax(t / T)
        bs = np.stack([ps[gt], ps[~gt].reshape(len(y), -1).sum(1)], 1)
        bt = np.stack([pt[gt], pt[~gt].reshape(len(y), -1).sum(1)], 1)
        kl = np.where(bt > 0, bt * (np.log(np.where(bt > 0, bt, 1)) - np.log(bs)), 0.0)
        return kl.sum() / len(y) * T ** 2

    expected = ref(student.double().numpy(), teacher.double().numpy(), target.numpy(), 1.0)
    assert float(tckd) == pytest.approx(expected, rel=1e-5)
    student.requires_grad_(True)
    tckd, _ = L.dkd_terms(student, teacher, target, 1.0)
    (g,) = torch.autograd.grad(tckd, student)
    assert torch.isfinite(g).all()
