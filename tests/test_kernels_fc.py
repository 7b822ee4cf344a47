"""FC kernels against closed forms and finite random networks (neural-tangents conventions)."""
import math

import numpy as np
import pytest
import torch

from engine.kernels import make_kernel

W_STD, B_STD = 1.4, 0.3


def arccos_depth1(x, y, w=W_STD, b=B_STD):
    """Closed form for stax.serial(Dense(w, b), Relu, Dense(w, b)), NTK parameterisation, in NumPy."""
    d = x.shape[0]
    q11, q22, q12 = w**2 * x @ x / d + b**2, w**2 * y @ y / d + b**2, w**2 * x @ y / d + b**2
    cos = np.clip(q12 / np.sqrt(q11 * q22), -1, 1)
    th = np.arccos(cos)
    relu = np.sqrt(q11 * q22) / (2 * np.pi) * (np.sin(th) + (np.pi - th) * cos)
    nngp = w**2 * relu + b**2
    ntk = nngp + w**2 * q12 * (np.pi - th) / (2 * np.pi)
    return nngp, ntk


def test_depth1_matches_arccos_closed_form():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 9))
    nngp = make_kernel("nngp-fc", depth=1, w_std=W_STD, b_std=B_STD)(torch.from_numpy(X))
    ntk = make_kernel("ntk-fc", depth=1, w_std=W_STD, b_std=B_STD)(torch.from_numpy(X))
    for i in range(6):
        for j in range(6):
            ref_nngp, ref_ntk = arccos_depth1(X[i], X[j])
            assert float(nngp[i, j]) == pytest.approx(ref_nngp, rel=1e-10)
            assert float(ntk[i, j]) == pytest.approx(ref_ntk, rel=1e-10)


def test_nngp_matches_finite_random_networks_monte_carlo():
    """Empirical output covariance of many wide random ReLU nets ≈ nngp-fc (depth 2)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, dtype=torch.float64, generator=g)
    depth, width, draws = 2, 512, 400
    outs = []
    for _ in range(draws):
        h = x
        for _ in range(depth):
            W = torch.randn(h.shape[1], width, dtype=torch.float64, generator=g) * W_STD / math.sqrt(h.shape[1])
            h = torch.relu(h @ W + B_STD * torch.randn(width, dtype=torch.float64, generator=g))
        W = torch.randn(width, 1, dtype=torch.float64, generator=g) * W_STD / math.sqrt(width)
        outs.append((h @ W + B_STD * torch.randn(1, dtype=torch.float64, generator=g)).squeeze(1))
    F = torch.stack(outs)                      # (draws, 3)
    emp = F.T @ F / draws
    K = make_kernel("nngp-fc", depth=depth, w_std=W_STD, b_std=B_STD)(x)
    assert torch.allclose(emp, K, rtol=0.25, atol=0.08 * float(K.diag().max()))


@pytest.mark.parametrize("name,params", [("linear", {}), ("rbf", {"bandwidth": 2.0}),
                                         ("nngp-fc", {"depth": 3}), ("ntk-fc", {"depth": 3})])
def test_symmetric_psd_tiling_diag_and_grad(name, params):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 2, 4, 4, dtype=torch.float64, generator=g)
    k = make_kernel(name, **params)
    K = k(x)
    assert torch.allclose(K, K.T, atol=1e-12)
    ev = torch.linalg.eigvalsh(K)
    assert ev.min() >= -1e-9 * ev.max()
    assert torch.allclose(K.diagonal(), k.diag(x), rtol=1e-12, atol=1e-12)
    k_small = make_kernel(name, tile_bytes=1000, **params)
    assert torch.allclose(k_small(x), K, rtol=1e-13, atol=1e-13)
    # a cross call does not know x[:7] ⊂ x: its k(x, x) entries take θ from q11·q22 − q12², whose
    # rounding (≈ 1e-16 relative) leaves θ ≈ 1e-8 instead of 0 and moves those entries by ≈ 1e-7
    # relative (measured 1.3e-7 at depth 3); every other entry agrees to rounding
    cross, off = k_small(x[:7], x), ~torch.eye(7, 40, dtype=torch.bool)
    assert torch.allclose(cross[off], K[:7][off], rtol=1e-12, atol=0)
    assert torch.allclose(cross.diagonal(), K.diagonal()[:7], rtol=1e-6, atol=0)
    xs = x[:5].clone().requires_grad_(True)
    k(xs, x).sum().backward()
    assert torch.isfinite(xs.grad).all()
    xs.grad = None
    k(xs).sum().backward()                       # the diagonal k(x, x) must not give NaN gradients
    assert torch.isfinite(xs.grad).all()


def test_rbf_median_default_and_unknown_names():
    x = torch.randn(30, 8, dtype=torch.float64)
    k = make_kernel("rbf").with_data_defaults(x)
    assert k.params()["bandwidth"] > 0
    with pytest.raises(ValueError, match="unknown kernel"):
        make_kernel("nope")
    with pytest.raises(ValueError, match="bad parameter"):
        make_kernel("ntk-fc", depht=2)


@pytest.mark.parametrize("mode, kernel", [("dgkip", k) for k in
                                          ("linear", "rbf", "nngp-fc", "ntk-fc", "nngp-conv", "ntk-conv", "rf-fc", "rf-conv")]
                         + [("kip", "linear"), ("kip", "rf-conv")])
def test_every_kernel_the_app_offers_distils(mode, kernel):
    """Two steps of a real run with each kernel (the step loop's thread policy and the test set's
    features are kernel-specific code paths); the gap reported at the end is finite."""
    from engine.config import DistillConfig
    from engine.distill import run
    from engine.events import Done
    from engine.kernels import kernel_names

    assert kernel in kernel_names()
    params = {"width": 8, "n_models": 1} if kernel.startswith("rf") else {}
    cfg = DistillConfig(classes=["0", "1"], max_per_class=20, ipc=1, steps=2, eval_every=0, snapshot_every=0,
                        mode=mode, loss="squared" if mode == "kip" else "cross-entropy", kernel=kernel,
                        kernel_params=params, kip_batch=16)
    done = [e for e in run(cfg) if isinstance(e, Done)][-1]
    assert done.metrics["steps"] == 2 and math.isfinite(done.metrics["gap"])
    assert 0.0 <= done.metrics["distilled_test_accuracy"] <= 1.0


@pytest.mark.parametrize("name", ["nngp-fc", "ntk-fc"])
@pytest.mark.parametrize("depth", [1, 3])
def test_in_place_evaluation_equals_the_differentiable_one(name, depth, monkeypatch, angle_method, root_method):
    """Without gradients the FC kernels take the in-place, cache-sized path (kernels.fc); it computes the
    same numbers as the autograd path, across sub-tiles, row tiles and the symmetric diagonal."""
    monkeypatch.setattr("engine.kernels.fc.CACHE_BYTES", 400)           # several sub-tiles per block
    g = torch.Generator().manual_seed(2)
    x = torch.randn(37, 12, dtype=torch.float64, generator=g)
    y = torch.randn(23, 12, dtype=torch.float64, generator=g)
    for tile in (10**9, 3000):                                            # one block, or several row tiles
        k = make_kernel(name, depth=depth, w_std=W_STD, b_std=B_STD, tile_bytes=tile)
        with torch.no_grad():
            fast_xy, fast_xx = k(x, y), k(x)
        slow_xy, slow_xx = k(x.clone().requires_grad_(), y), k(x.clone().requires_grad_())
        # with gradients the block is the fused node (kernels.fc_fused), whose first layer scales inside
        # the GEMM: last-bit differences, which the NTK's near-zero entries carry to ~1e-13 relative
        scale = 1e-14 * float(fast_xx.abs().max())
        assert torch.allclose(fast_xy, slow_xy.detach(), rtol=1e-13, atol=scale)
        assert torch.allclose(fast_xx, slow_xx.detach(), rtol=1e-13, atol=scale)
        assert torch.equal(fast_xx.diagonal(), slow_xx.detach().diagonal()) or torch.allclose(
            fast_xx.diagonal(), k.diag(x), rtol=1e-14, atol=0)


def test_row_norm_cache_never_serves_stale_norms():
    """The squared row norms of fixed inputs are cached; an in-place write, another view of the same
    memory, or a new tensor at the address of a freed one must all be recomputed."""
    from engine.kernels.base import row_sq_norms
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 7, generator=g, dtype=torch.float64)
    first = row_sq_norms(x)
    assert row_sq_norms(x) is first                                  # cached
    torch.testing.assert_close(first, (x * x).sum(1), rtol=1e-15, atol=0)
    x[3].mul_(2.0)                                                   # in-place write: version bump
    torch.testing.assert_close(row_sq_norms(x), (x * x).sum(1), rtol=1e-15, atol=0)
    torch.testing.assert_close(row_sq_norms(x[10:20]), (x[10:20] ** 2).sum(1), rtol=1e-15, atol=0)
    torch.testing.assert_close(row_sq_norms(x[:, :3]), (x[:, :3] ** 2).sum(1), rtol=1e-15, atol=0)
    for seed in range(20):                                           # freed memory reused by new tensors
        y = torch.randn(50, 7, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        torch.testing.assert_close(row_sq_norms(y), (y * y).sum(1), rtol=1e-15, atol=0)
        del y
    z = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)   # with a gradient: never cached
    row_sq_norms(z).sum().backward()
    torch.testing.assert_close(z.grad, 2 * z.detach())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_both_square_roots_agree_and_the_choice_is_measured_once(dtype, monkeypatch):
    from engine.kernels import fc
    s0 = torch.rand(1000, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 10
    s0[:3] = torch.tensor([torch.finfo(dtype).tiny, 1.0, 0.25], dtype=torch.float64)
    ref = s0.sqrt()
    for how in fc.ROOT_METHODS:
        out = fc.root_into(s0.to(dtype).clone(), torch.empty(1000, dtype=dtype), how)
        torch.testing.assert_close(out.double(), ref, rtol=2 * torch.finfo(dtype).eps, atol=0)
    monkeypatch.setattr(fc, "_root_chosen", {})
    timed = []
    real = fc.fastest_of
    monkeypatch.setattr(fc, "fastest_of", lambda *a: timed.append(1) or real(*a))
    first = fc.root_method(dtype)
    assert first in fc.ROOT_METHODS and fc.root_method(dtype) == first and len(timed) == 1
    assert fc.root_method(dtype, "meta") == "sqrt"                # off the CPU: not timed
