"""rf-fc / rf-conv: convergence to the infinite-width kernels (nngp-fc; a slow full-spatial reference
of the pooled ConvNet NNGP written here), and the explicit-kernel contract: φφᵀ, seeding, redraw,
tiling, gradients."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from engine.kernels import make_kernel

W_STD, B_STD = math.sqrt(2.0), 0.2


def rel_err(k: torch.Tensor, ref: torch.Tensor) -> float:
    return float((k - ref).norm() / ref.norm())


def data(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) + 0.2


# -- slow reference: NNGP of [Conv 3×3 SAME → ReLU → AvgPool 2×2] * depth → Flatten → Dense ---------
def _conv_full(s: np.ndarray, w2: float, b2: float) -> np.ndarray:
    """Full spatial covariance s[p, p'] (positions (h, w) flattened as H, W, H, W) through a 3×3 'SAME'
    conv with shared weights: W² / 9 · Σ_δ s[p + δ, p' + δ] (zero outside) + b²."""
    h, w = s.shape[:2]
    out = np.zeros_like(s)
    for i, j, k, l in np.ndindex(h, w, h, w):
        for di, dj in np.ndindex(3, 3):
            a, b, c, d = i + di - 1, j + dj - 1, k + di - 1, l + dj - 1
            if 0 <= a < h and 0 <= b < w and 0 <= c < h and 0 <= d < w:
                out[i, j, k, l] += s[a, b, c, d]
    return w2 * out / 9 + b2


def _relu_full(s12, v1, v2):
    """Arc-cosine map of s12[p, p'] with variances v1[p], v2[p'] (arrays over positions)."""
    norm = np.sqrt(v1[:, :, None, None] * v2[None, None, :, :])
    c = np.clip(s12 / norm, -1, 1)
    t = np.arccos(c)
    return norm * (np.sin(t) + (np.pi - t) * c) / (2 * np.pi)


def _pool_full(s: np.ndarray) -> np.ndarray:
    """2×2 stride-2 average pooling on both position axes (floor)."""
    h, w = s.shape[0] // 2, s.shape[1] // 2
    out = np.zeros((h, w, h, w))
    for i, j, k, l in np.ndindex(h, w, h, w):
        out[i, j, k, l] = s[2 * i:2 * i + 2, 2 * j:2 * j + 2, 2 * k:2 * k + 2, 2 * l:2 * l + 2].mean()
    return out


def pooled_convnet_nngp(x: np.ndarray, y: np.ndarray, depth: int) -> float:
    w2, b2 = W_STD ** 2, B_STD ** 2
    cov = lambda u, v: np.einsum("chw,ckl->hwkl", u, v) / u.shape[0]
    s12, s11, s22 = (_conv_full(cov(u, v), w2, b2) for u, v in ((x, y), (x, x), (y, y)))
    for layer in range(depth):
        v1, v2 = np.einsum("hwhw->hw", s11), np.einsum("hwhw->hw", s22)
        r12, r11, r22 = _relu_full(s12, v1, v2), _relu_full(s11, v1, v1), _relu_full(s22, v2, v2)
        s12, s11, s22 = _pool_full(r12), _pool_full(r11), _pool_full(r22)
        if layer < depth - 1:
            s12, s11, s22 = (_conv_full(s, w2, b2) for s in (s12, s11, s22))
    return w2 * np.einsum("hwhw->", s12) / (s12.shape[0] * s12.shape[1]) + b2   # Flatten + Dense


# -- convergence ----------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 2])
def test_rf_fc_converges_to_nngp_fc(depth):
    x = data((16, 12), seed=1)
    exact = make_kernel("nngp-fc", depth=depth, w_std=W_STD, b_std=B_STD)(x)
    errs = [rel_err(make_kernel("rf-fc", width=w, n_models=4, depth=depth, w_std=W_STD, b_std=B_STD,
                                seed=3)(x), exact) for w in (16, 128, 1024)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.05, errs


def test_rf_conv_converges_to_pooled_convnet_nngp():
    x = data((4, 2, 4, 4), seed=2)
    exact = torch.tensor([[pooled_convnet_nngp(u, v, 2) for v in x.numpy()] for u in x.numpy()])
    errs = [rel_err(make_kernel("rf-conv", width=w, n_models=16, depth=2, w_std=W_STD, b_std=B_STD,
                                seed=0)(x), exact) for w in (4, 32, 256)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.05, errs


# -- explicit-kernel contract ---------------------------------------------------------------------
SMALL = {"rf-fc": ({"width": 32, "n_models": 3, "depth": 2}, (9, 2, 4, 4)),
         "rf-conv": ({"width": 6, "n_models": 3, "depth": 2, "feature_dtype": "float64"}, (9, 2, 5, 6))}


def test_float32_networks_return_features_in_the_input_dtype():
    """rf-conv runs its networks in float32 by default and hands back float64 features for float64
    inputs: equal to the float64 networks' features to float32 precision, and a differentiable cast."""
    x = data((5, 3, 8, 8), seed=7).requires_grad_(True)
    fast = make_kernel("rf-conv", width=8, n_models=2, depth=2)
    exact = make_kernel("rf-conv", width=8, n_models=2, depth=2, feature_dtype="float64")
    assert fast.params()["feature_dtype"] == "float32" and make_kernel("rf-fc").feature_dtype is None
    phi = fast.features(x)
    assert phi.dtype == torch.float64
    assert 0 < rel_err(phi.detach(), exact.features(x).detach()) < 1e-6
    phi.sum().backward()
    g32 = x.grad.clone()
    x.grad = None
    exact.features(x).sum().backward()
    assert rel_err(g32, x.grad) < 1e-5
    with pytest.raises(ValueError, match="feature_dtype"):
        make_kernel("rf-conv", feature_dtype="float16")


@pytest.mark.parametrize("name", list(SMALL))
def test_features_symmetric_psd_diag_and_tiling(name):
    params, shape = SMALL[name]
    x = data(shape, seed=5)
    k = make_kernel(name, **params)
    assert k.explicit
    phi = k.features(x)
    K = k(x)
    assert phi.shape[0] == x.shape[0] and torch.all(phi[:, -1] == k.b_std)     # bias column
    torch.testing.assert_close(K, phi @ phi.T, rtol=0, atol=0)
    torch.testing.assert_close(K, K.T, rtol=0, atol=1e-13)
    ev = torch.linalg.eigvalsh(K)
    assert ev.min() >= -1e-8 * ev.max()
    torch.testing.assert_close(k.diag(x), K.diagonal(), rtol=0, atol=1e-12)
    torch.testing.assert_close(k(x[:4], x[4:]), K[:4, 4:], rtol=0, atol=1e-12)
    tiny = make_kernel(name, tile_bytes=1, **params)                          # features row by row
    torch.testing.assert_close(tiny.features(x), phi, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(SMALL))
def test_seed_determinism_and_redraw(name):
    params, shape = SMALL[name]
    x = data(shape, seed=6)
    k = make_kernel(name, seed=11, **params)
    same = make_kernel(name, **json.loads(json.dumps(k.params())))               # JSON round trip
    torch.testing.assert_close(same.features(x), k.features(x), rtol=0, atol=0)
    torch.testing.assert_close(k.features(x[:3]), k.features(x)[:3], rtol=0, atol=1e-12)  # row-wise
    fresh = k.redraw(12)
    assert type(fresh) is type(k) and fresh.params() == {**k.params(), "seed": 12}
    assert not torch.allclose(fresh.features(x), k.features(x))
    torch.testing.assert_close(fresh.features(x), make_kernel(name, seed=12, **params).features(x),
                               rtol=0, atol=0)
    torch.testing.assert_close(k.redraw(11).features(x), k.features(x), rtol=0, atol=0)
    # float32 inputs use the same draws (made in float64, then cast)
    torch.testing.assert_close(k.features(x.float()).double(), k.features(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(SMALL))
def test_features_gradcheck(name):
    params, shape = SMALL[name]
    x = data((2,) + shape[1:], seed=7).requires_grad_()
    k = make_kernel(name, **params)
    assert torch.autograd.gradcheck(k.features, (x,), fast_mode=True)
    other = data((3,) + shape[1:], seed=8)
    assert torch.autograd.gradcheck(lambda a: k(a, other), (x,), fast_mode=True)


def test_params_defaults_and_errors():
    fc, conv = make_kernel("rf-fc"), make_kernel("rf-conv")
    assert fc.params() == {"width": 512, "n_models": 4, "depth": 1, "w_std": math.sqrt(2.0),
                           "b_std": 0.1, "seed": 0, "redraw_every": 1, "feature_dtype": None}
    assert conv.params() == {"width": 64, "n_models": 4, "depth": 3, "w_std": math.sqrt(2.0),
                             "b_std": 0.1, "seed": 0, "redraw_every": 1, "feature_dtype": "float32",
                             "norm": False}
    assert conv.layout == "image" and fc.layout == "flat"
    # MNIST-sized input: 28 → 14 → 7 → 3, n_models · width · 3 · 3 features (+ the bias column)
    assert conv.features(torch.zeros(2, 1, 28, 28)).shape == (2, 4 * 64 * 9 + 1)
    with pytest.raises(ValueError, match="8×8"):
        conv.features(torch.zeros(2, 1, 7, 7))
    for bad in ({"width": 0}, {"n_models": 0}, {"depth": 0}, {"redraw_every": -1}):
        with pytest.raises(ValueError):
            make_kernel("rf-conv", **bad)


def test_instance_norm_option():
    x = data((5, 1, 8, 8), seed=8)
    k = make_kernel("rf-conv", width=8, n_models=2, depth=2, norm=True)
    assert k.params()["norm"] is True
    K = k(x)
    assert torch.isfinite(K).all()
    assert not torch.allclose(K, make_kernel("rf-conv", width=8, n_models=2, depth=2)(x))


def _distil(**kw):
    from engine.config import DistillConfig
    from engine.distill import run
    from engine.events import Done

    cfg = DistillConfig(classes=["0", "1", "2"], ipc=1, steps=4, eval_every=0, snapshot_every=0, kip_batch=64, **kw)
    return [e for e in run(cfg) if isinstance(e, Done)][-1].result


def test_kip_redraws_random_networks_every_k_steps_deterministically():
    """RFAD-style KIP: redrawing changes the trajectory; the same config reproduces it exactly."""
    params = {"width": 64, "n_models": 1}
    fixed = _distil(mode="kip", loss="squared", kernel="rf-fc", kernel_params={**params, "redraw_every": 0})
    every = _distil(mode="kip", loss="squared", kernel="rf-fc", kernel_params={**params, "redraw_every": 1})
    again = _distil(mode="kip", loss="squared", kernel="rf-fc", kernel_params={**params, "redraw_every": 1})
    assert not np.allclose(fixed.images, every.images)
    np.testing.assert_array_equal(every.images, again.images)


def test_dgkip_keeps_the_teachers_networks():
    """DGKIP's teacher weights belong to the kernel's own networks: redraw_every changes nothing."""
    params = {"width": 64, "n_models": 1}
    a = _distil(loss="logistic", kernel="rf-fc", kernel_params={**params, "redraw_every": 0})
    b = _distil(loss="logistic", kernel="rf-fc", kernel_params={**params, "redraw_every": 1})
    np.testing.assert_array_equal(a.images, b.images)


def test_explicit_teacher_keeps_weights_when_solved_on_the_dense_matrix():
    """p ≥ n: the solve uses K = ΦΦᵀ, yet the teacher keeps w* = Φᵀc, so steps cost O(m·p) not O(m·n);
    its scores equal the kernel expansion Σ_i c_i k(x_i, x) computed directly."""
    from engine.generators import drain
    from engine.losses import make_loss
    from engine.teacher import fit_teacher

    g = torch.Generator().manual_seed(0)
    x, labels = torch.randn(40, 6, generator=g, dtype=torch.float64), torch.arange(40) % 3
    k = make_kernel("rf-fc", width=64, n_models=1)          # p = 65 ≥ n = 40
    loss = make_loss("logistic")
    teacher = drain(fit_teacher(k, loss, 1e-2, x, loss.targets(labels, 3)))
    assert teacher.weights is not None and teacher.weights.shape == (65, 3) and teacher.x is None
    xt = torch.randn(7, 6, generator=g, dtype=torch.float64)
    coef = teacher.solution.alpha / (1e-2 * 40)
    torch.testing.assert_close(teacher.scores(xt), k(xt, x) @ coef, rtol=1e-10, atol=1e-12)
    Z, K = teacher.scores_and_gram(xt)                      # the step's one-pass φ(x̃) for both
    torch.testing.assert_close(Z, k(xt, x) @ coef, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(K, k(xt), rtol=1e-12, atol=1e-12)

    # the test set keeps φ(x_test): teacher scores, k(x, x) and predictions of a model on S from it
    from engine.certify import TestSet, predict
    test = TestSet.build(teacher, xt, torch.arange(7) % 3)
    assert test.points.features is not None and test.points.features.shape == (7, 65)
    torch.testing.assert_close(test.teacher_scores, k(xt, x) @ coef, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(test.kdiag, k.diag(xt), rtol=1e-12, atol=1e-12)
    xs, alpha = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(test.points.predict(k, xs, alpha, 1e-2), predict(k, xs, alpha, 1e-2, xt),
                               rtol=1e-10, atol=1e-12)


def _kip_reference(kernel, xs, Ys, xb, Yb, lam, ridge):
    """KIP's loss written out from kernel calls: ½·mean_b ‖Y_b − K_bS (K_SS + ρ I)⁻¹ Ỹ‖², ρ = λ m
    ("fixed") or λ tr(K_SS)/m ("trace")."""
    m = xs.shape[0]
    kss = kernel(xs)
    rho = lam * m if ridge == "fixed" else lam * torch.trace(kss) / m
    coef = torch.linalg.solve(kss + rho * torch.eye(m, dtype=xs.dtype), Ys)
    return 0.5 * ((Yb - kernel(xb, xs) @ coef) ** 2).sum(1).mean()


@pytest.mark.parametrize("ridge", ["trace", "fixed"])
@pytest.mark.parametrize("name, shape", [("rf-fc", (5,)), ("rf-conv", (2, 8, 8))])
def test_kip_loss_with_cached_batch_features_matches_kernel_calls(name, shape, ridge):
    """KIP's explicit path (φ(x̃) once, the batch's features precomputed or computed without a graph)
    gives the loss and the gradient in x̃ of the plain kernel-call formula."""
    from engine.kip import kip_loss

    k = make_kernel(name, width=16, n_models=2, depth=2, redraw_every=0, feature_dtype="float64")
    xb, Yb = data((30,) + shape, 1), data((30, 3), 2)
    Ys = data((4, 3), 3)
    grads = []
    for use_cache in (None, False, True):
        xs = data((4,) + shape, 4).requires_grad_(True)
        if use_cache is None:
            value = _kip_reference(k, xs, Ys, xb, Yb, 1e-2, ridge)
        else:
            value = kip_loss(k, xs, Ys, None if use_cache else xb, Yb, 1e-2,
                             fb=k.features(xb) if use_cache else None, ridge=ridge)
        value.backward()
        grads.append((value.detach(), xs.grad))
    for v, g in grads[1:]:
        torch.testing.assert_close(v, grads[0][0], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(g, grads[0][1], rtol=1e-10, atol=1e-14)


def test_step_thread_policy_counts_the_feature_networks():
    """A 100-image rf-conv step on CIFAR-sized inputs is far above the one-thread cut-off (it runs the
    ConvNets forward and backward); a 10-image rf-fc step on MNIST is below it."""
    from engine.device import SMALL_STEP_FLOPS
    from engine.objectives import step_flops

    conv = make_kernel("rf-conv", width=128, n_models=2)
    fc = make_kernel("rf-fc", width=1024, n_models=2)
    assert step_flops(conv, 100, (3, 32, 32), 10, 4097) > 10 * SMALL_STEP_FLOPS
    assert step_flops(fc, 10, (784,), 10, 2049) < SMALL_STEP_FLOPS
    assert step_flops(make_kernel("ntk-fc"), 10, (784,), 60000) > SMALL_STEP_FLOPS


def test_hinge_teacher_on_features_uses_coordinate_descent_when_the_gram_fits():
    """p < n with hinge on the CPU: the teacher builds K = ΦΦᵀ (within half the budget) for coordinate
    descent, keeps w* = Φᵀc, and reaches FISTA's optimum on Φ; with a budget too small for ΦΦᵀ it runs
    FISTA on Φ. The run estimate plans the same storage."""
    from engine.config import DistillConfig
    from engine.data import load_dataset
    from engine.plan import estimate_run
    from engine.generators import drain
    from engine.losses import make_loss
    from engine.teacher import fit_teacher

    g = torch.Generator().manual_seed(3)
    x, labels = torch.randn(120, 6, generator=g, dtype=torch.float64), torch.arange(120) % 3
    k = make_kernel("rf-fc", width=16, n_models=1)               # p = 17 < n = 120
    loss = make_loss("hinge")
    Y = loss.targets(labels, 3)
    cd = drain(fit_teacher(k, loss, 1e-2, x, Y, tol=1e-8))
    fista = drain(fit_teacher(k, loss, 1e-2, x, Y, tol=1e-8, budget_bytes=2 * 120 * 120 * 8))
    assert cd.solution.solver.startswith("coordinate descent") and fista.solution.solver.startswith("fista")
    assert cd.weights is not None and cd.weights.shape == (17, 3)
    assert cd.solution.primal == pytest.approx(fista.solution.primal, rel=1e-6)
    torch.testing.assert_close(cd.weights, fista.weights, rtol=1e-3, atol=1e-4)

    report = load_dataset("sample").report
    plan = {loss: estimate_run(DistillConfig(loss=loss, kernel="rf-fc", kernel_params={"width": 16, "n_models": 1},
                                             device="cpu"), report).storage for loss in ("hinge", "logistic")}
    assert plan == {"hinge": "dense", "logistic": "features"}
