"""Losses against independent references: brute-force conjugates and the Fenchel–Young identity."""
import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from engine.losses import SmoothedHingeLoss, loss_names, make_loss

BINARY = ["logistic", "hinge", "squared-hinge"]


def brute_conjugate_binary(name: str, y: float, alpha: float) -> float:
    """sup_z [ −α z − ℓ(y, z) ] by bounded numeric maximisation over a wide z-interval."""
    loss = make_loss(name)

    def neg(z):
        Z = torch.tensor([[z]], dtype=torch.float64)
        return -(-alpha * z - float(loss.value(torch.tensor([[y]], dtype=torch.float64), Z)))

    return -minimize_scalar(neg, bounds=(-60, 60), method="bounded", options={"xatol": 1e-12}).fun


@pytest.mark.parametrize("name", BINARY + ["squared"])
def test_conjugate_matches_brute_force_sup(name):
    loss = make_loss(name)
    for y in (-1.0, 1.0):
        betas = [0.05, 0.3, 0.5, 0.9] if name != "squared" else [-1.5, -0.2, 0.4, 2.0]
        for beta in betas:
            alpha = beta * y if name != "squared" else beta
            got = float(loss.conj_neg(torch.tensor([[y]], dtype=torch.float64), torch.tensor([[alpha]], dtype=torch.float64)))
            ref = brute_conjugate_binary(name, y, alpha)
            assert got == pytest.approx(ref, abs=2e-6), (name, y, beta)


def test_cross_entropy_conjugate_brute_force():
    loss = make_loss("cross-entropy")
    rng = np.random.default_rng(0)
    y = np.array([0.2, 0.7, 0.1])
    p = np.array([0.5, 0.3, 0.2])
    alpha = y - p
    # sup_z [ -αᵀz − ℓ(y, z) ] with ℓ = −yᵀz + logsumexp(z); z defined up to a shift: fix z_0 = 0
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    def neg(zr):
        z = np.concatenate([[0.0], zr])
        return -(-alpha @ z - (-(y @ z) + logsumexp(z)))

    ref = -minimize(neg, rng.standard_normal(2), method="BFGS", options={"gtol": 1e-12}).fun
    got = float(loss.conj_neg(torch.tensor(y[None]), torch.tensor(alpha[None])))
    assert got == pytest.approx(ref, abs=1e-8)


@pytest.mark.parametrize("name", loss_names())
def test_fenchel_young_identity_and_positivity(name):
    loss = make_loss(name)
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 4, (50,), generator=g)
    Y = loss.targets(labels, 4)
    Z = 3 * torch.randn(50, 4, dtype=torch.float64, generator=g)
    # at the optimal dual the Fenchel–Young term vanishes (to 1e-10 in float64) ...
    A_opt = loss.optimal_alpha(Y, Z)
    assert loss.fenchel_young(Y, Z, A_opt).abs().max() < 1e-10
    # ... and for any feasible dual it is ≥ 0
    for _ in range(5):
        A = loss.alpha_from_param(Y, 4 * torch.randn(50, 4, dtype=torch.float64, generator=g))
        assert loss.fenchel_young(Y, Z, A).min() >= -1e-12


SMOOTH = [n for n in loss_names() if n != "hinge"]


@pytest.mark.parametrize("name", SMOOTH + ["smoothed-hinge"])
def test_optimal_alpha_is_minus_gradient(name):
    """−α(Z) is ∇ℓ(Z) for every smooth loss (engine.gap_step's DGKIP step takes ∇ℓ from it)."""
    loss = SmoothedHingeLoss(0.3) if name == "smoothed-hinge" else make_loss(name)
    assert loss.smooth
    g = torch.Generator().manual_seed(2)
    Y = loss.targets(torch.randint(0, 3, (20,), generator=g), 3)
    Z = torch.randn(20, 3, dtype=torch.float64, generator=g).requires_grad_(True)
    loss.value(Y, Z).sum().backward()
    assert torch.allclose(loss.optimal_alpha(Y, Z.detach()), -Z.grad, atol=1e-12)


def test_hinge_optimal_beta_and_feasibility():
    loss = make_loss("hinge")
    Y = torch.tensor([[1.0], [1.0], [-1.0]], dtype=torch.float64)
    Z = torch.tensor([[0.5], [2.0], [0.5]], dtype=torch.float64)
    assert loss.optimal_alpha(Y, Z).flatten().tolist() == [1.0, 0.0, -1.0]
    A = loss.alpha_from_param(Y, torch.randn(3, 1, dtype=torch.float64) * 10)
    beta = A * Y
    assert (beta >= 0).all() and (beta <= 1).all()


@pytest.mark.parametrize("name", SMOOTH)
def test_hvp_matches_autograd(name):
    loss = make_loss(name)
    g = torch.Generator().manual_seed(3)
    Y = loss.targets(torch.randint(0, 3, (7,), generator=g), 3)
    Z = torch.randn(7, 3, dtype=torch.float64, generator=g)
    V = torch.randn(7, 3, dtype=torch.float64, generator=g)
    _, hv = torch.autograd.functional.hvp(lambda z: loss.value(Y, z).sum(), Z, V)
    assert torch.allclose(loss.hvp(Y, Z, V), hv, atol=1e-10)


def test_projection_and_param_roundtrip_are_feasible():
    for name in loss_names():
        loss = make_loss(name)
        Y = loss.targets(torch.tensor([0, 1, 2, 1]), 3)
        A = loss.project(Y, torch.randn(4, 3, dtype=torch.float64) * 3)
        A2 = loss.alpha_from_param(Y, loss.param_from_alpha(Y, A))
        assert torch.isfinite(loss.conj_neg(Y, A)).all(), name
        assert torch.isfinite(loss.conj_neg(Y, A2)).all(), name


def test_cross_entropy_value_against_scipys_logsumexp():
    # ℓ = −yᵀz + log Σ e^z for any label rows (one-hot, soft, not summing to one), scores up to 1e3 and
    # one column far below the rest (a log Σ e^z read off that column would cancel); float32 within
    # its own rounding of the scores, as logsumexp itself
    from scipy.special import logsumexp
    loss = make_loss("cross-entropy")
    rng = np.random.default_rng(3)
    for scale, shift in ((1.0, 0.0), (30.0, 0.0), (1e3, 0.0), (1.0, -1e3), (1.0, -1e30)):
        Z = scale * rng.standard_normal((200, 7))
        Z[:, 0] += shift
        Y = np.concatenate([np.eye(7)[rng.integers(1, 7, 100)], rng.random((100, 7))])
        Y[100:, 0] = 0.0                                         # finite values: no label on the −1e30 column
        ref = -(Y * Z).sum(1) + logsumexp(Z, axis=1)
        got = loss.value(torch.from_numpy(Y), torch.from_numpy(Z)).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * scale)
        if shift > -1e20:
            got32 = loss.value(torch.from_numpy(Y).float(), torch.from_numpy(Z).float()).double().numpy()
            np.testing.assert_allclose(got32, ref, rtol=0, atol=4e-7 * 7 * scale * 4)
