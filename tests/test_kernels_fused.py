"""The fused FC kernels (engine.kernels.fc_fused): values and gradients against autograd of the unfused
recursion (FCNetworkKernel._recursion) and against finite differences (gradcheck)."""
import pytest
import torch

import engine.kernels.fc as fc
from engine.kernels import make_kernel
from engine.kernels.base import identity_key
from engine.kernels.fc_fused import fc_kernel

PARAMS = [(1.4, 0.3), (2 ** 0.5, 0.1), (1.0, 0.0)]        # (W_std, b_std); b_std 0: no bias


def _unfused(k, a, b, diag_offset=None):
    mask = None
    if diag_offset is not None:
        rows = torch.arange(a.shape[0])[:, None] + diag_offset
        mask = rows == torch.arange(b.shape[0])[None, :]
    return k._recursion(*k._first(a, b), diag_mask=mask)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("ntk", [False, True])
@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("w_std,b_std", PARAMS)
def test_values_and_gradients_match_autograd_of_the_unfused_recursion(dtype, tol, ntk, depth, w_std, b_std,
                                                                     angle_method):
    g = torch.Generator().manual_seed(depth + 10 * ntk)
    k = make_kernel("ntk-fc" if ntk else "nngp-fc", depth=depth, w_std=w_std, b_std=b_std)
    for n_a, n_b in ((9, 4), (4, 9)):               # both layouts (the fused node puts the thinner side left)
        a = torch.randn(n_a, 11, dtype=dtype, generator=g)
        b = torch.randn(n_b, 11, dtype=dtype, generator=g)
        w = torch.randn(n_a, n_b, dtype=dtype, generator=g)
        for grad_a, grad_b in ((True, False), (False, True), (True, True)):
            ra, rb = a.clone().requires_grad_(grad_a), b.clone().requires_grad_(grad_b)
            fa, fb = a.clone().requires_grad_(grad_a), b.clone().requires_grad_(grad_b)
            ref, out = _unfused(k, ra, rb), fc_kernel(fa, fb, depth, w_std, b_std, ntk)
            torch.testing.assert_close(out, ref, rtol=tol, atol=tol * float(ref.detach().abs().max()))
            wanted = [t for t in (ra, rb) if t.requires_grad]
            got = [t for t in (fa, fb) if t.requires_grad]
            for r, f in zip(torch.autograd.grad((ref * w).sum(), wanted), torch.autograd.grad((out * w).sum(), got)):
                torch.testing.assert_close(f, r, rtol=tol, atol=tol * float(r.abs().max()))
    # symmetric k(x, x) and a row tile of it: θ = 0 on the diagonal, gradients through both inputs
    x = torch.randn(8, 11, dtype=dtype, generator=g)
    for start in (0, 3):
        rx, fx = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ref = _unfused(k, rx[start:], rx, start)
        out = fc_kernel(fx[start:], fx, depth, w_std, b_std, ntk, start)
        torch.testing.assert_close(out, ref, rtol=tol, atol=tol * float(ref.detach().abs().max()))
        w = torch.randn(ref.shape, dtype=dtype, generator=g)
        r, = torch.autograd.grad((ref * w).sum(), rx)
        f, = torch.autograd.grad((out * w).sum(), fx)
        assert torch.isfinite(f).all()
        torch.testing.assert_close(f, r, rtol=tol, atol=tol * float(r.abs().max()))


@pytest.mark.parametrize("ntk", [False, True])
@pytest.mark.parametrize("depth", [1, 3])
def test_gradcheck_float64(ntk, depth, angle_method):
    g = torch.Generator().manual_seed(5)
    a = torch.randn(5, 7, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(3, 7, dtype=torch.float64, generator=g, requires_grad=True)
    for w_std, b_std in PARAMS:
        assert torch.autograd.gradcheck(lambda u, v: fc_kernel(u, v, depth, w_std, b_std, ntk), (a, b))
        assert torch.autograd.gradcheck(lambda u, v: fc_kernel(v, u, depth, w_std, b_std, ntk), (a, b))
    # the symmetric kernel away from its diagonal (where θ's derivative is singular by nature)
    x = torch.randn(4, 7, dtype=torch.float64, generator=g, requires_grad=True)
    off = ~torch.eye(4, dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda u: fc_kernel(u, u, depth, 1.4, 0.3, ntk, 0)[off], (x,))


@pytest.mark.parametrize("ntk", [False, True])
def test_duplicate_points_give_the_unfused_clamped_gradient(ntk, angle_method):
    """A synthetic image equal to a real one (DGKIP and KIP start from real images): the radicand is
    clamped at ε P; the gradient stays finite and equals autograd's through the clamp."""
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        g = torch.Generator().manual_seed(3)
        # quarter-integers: every product and sum is exact in float32 too, so the duplicate's q12 equals
        # √(q11 q22) on every BLAS (with general floats float32 rounding leaves the radicand ~1e-6 q11 q22,
        # above the clamp, and which side of it lands depends on the machine's matmul kernel)
        real = torch.randint(-8, 9, (6, 10), generator=g).to(dtype) / 4
        syn = torch.cat([real[2:3], torch.randn(2, 10, dtype=dtype, generator=g)])
        k = make_kernel("ntk-fc" if ntk else "nngp-fc", depth=2, w_std=1.4, b_std=0.3)
        q12, q11, q22 = k._first(real, syn)                 # the duplicate pair is clamped (else no test)
        eps = 1e-20 if dtype == torch.float64 else 1e-7
        assert q11[2, 0] * q22[0, 0] - q12[2, 0] ** 2 <= eps * q11[2, 0] * q22[0, 0]
        rs, fs = syn.clone().requires_grad_(True), syn.clone().requires_grad_(True)
        ref, out = _unfused(k, real, rs), fc_kernel(real, fs, 2, 1.4, 0.3, ntk)
        w = torch.randn(ref.shape, dtype=dtype, generator=g)
        r, = torch.autograd.grad((ref * w).sum(), rs)
        f, = torch.autograd.grad((out * w).sum(), fs)
        assert torch.isfinite(f).all()
        torch.testing.assert_close(f, r, rtol=tol, atol=tol * float(r.abs().max()))


@pytest.mark.parametrize("name", ["nngp-fc", "ntk-fc"])
def test_kernel_class_takes_the_fused_node_with_gradients(name, monkeypatch):
    """FCNetworkKernel with gradients: the fused node (one grad_fn for the block) computes what the
    unfused graph does, tiled or not, images or flat."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(12, 1, 3, 3, dtype=torch.float64, generator=g)
    real = torch.randn(30, 1, 3, 3, dtype=torch.float64, generator=g)
    for tile in (10**9, 2000):
        k = make_kernel(name, depth=2, tile_bytes=tile)
        outs = {}
        for fused in (True, False):
            monkeypatch.setattr(fc, "FUSED", fused)
            xs = x.clone().requires_grad_(True)
            K1, K2 = k(real, xs), k(xs)
            if fused and tile > 10**6:
                assert "FusedFC" in type(K2.grad_fn).__name__
            grad, = torch.autograd.grad(K1.square().sum() + K2.square().sum(), xs)
            outs[fused] = (K1.detach(), K2.detach(), grad)
        for f, u in zip(outs[True], outs[False]):
            torch.testing.assert_close(f, u, rtol=1e-12, atol=1e-12)


def test_gemm_helper_equals_torch_mm(monkeypatch):
    """The fused node's x wᵀ (oneDNN for large float32 CPU products, engine.kernels.fc_fused.mm_nt)
    equals torch.mm to float32 rounding, for contiguous and transposed operands and both sides of the
    size threshold; float64 goes to torch.mm unchanged."""
    from engine.kernels import fc_fused
    g = torch.Generator().manual_seed(11)
    for r, c, k in ((10, 2000, 784), (3, 5, 7), (40, 300, 100)):
        x, w = torch.randn(r, k, generator=g), torch.randn(c, k, generator=g)
        ref = (x.double() @ w.double().T)
        scale = float((x.double().abs() @ w.double().abs().T).max())
        for xx, ww in ((x, w), (x, w.T.contiguous().T), (x.T.contiguous().T, w)):
            out = fc_fused.mm_nt(xx, ww)
            assert out.dtype == torch.float32 and out.shape == (r, c)
            assert float((out.double() - ref).abs().max()) <= 1e-6 * scale
    x64, w64 = torch.randn(30, 50, dtype=torch.float64, generator=g), torch.randn(40, 50, dtype=torch.float64, generator=g)
    assert torch.equal(fc_fused.mm_nt(x64, w64), torch.mm(x64, w64.T))
    monkeypatch.setattr(fc_fused, "ONEDNN_MIN_MACS", 0)                   # every float32 product via oneDNN
    test_values_and_gradients_match_autograd_of_the_unfused_recursion(torch.float32, 2e-5, True, 2, 1.4, 0.3, None)


def _kept_products(monkeypatch, forward: str, gradient: str = "onednn"):
    """engine.kernels.fc_fused with every float32 product through oneDNN, no operand kept yet, and the
    kept operands' forward and gradient paths forced to ``forward`` and ``gradient`` (skips where
    torch has no oneDNN)."""
    from engine.kernels import fc_fused
    if fc_fused._ONEDNN_LINEAR is None:
        pytest.skip("torch built without oneDNN")
    monkeypatch.setattr(fc_fused, "ONEDNN_MIN_MACS", 0)
    monkeypatch.setattr(fc_fused, "_FIXED", [])
    monkeypatch.setattr(fc_fused, "_faster_forward", lambda x, kept: forward)
    monkeypatch.setattr(fc_fused, "_faster_gradient", lambda g, entry: gradient)
    return fc_fused


@pytest.mark.parametrize("gradient", ["mkl", "onednn", "rows"])
@pytest.mark.parametrize("forward", ["mkl", "onednn"])
def test_fixed_operand_is_kept_transposed_only_while_unchanged(forward, gradient, monkeypatch):
    """A fixed operand seen twice is kept as a contiguous transpose (kernels.fc_fused._fixed_entry)
    that the forward and the gradient product both read: values and gradients agree with autograd of
    the unfused recursion in float64 on every call, the copy is made on the second sighting only, and
    an in-place write to the operand is seen at once."""
    fc_fused = _kept_products(monkeypatch, forward, gradient)
    g = torch.Generator().manual_seed(13)
    k = make_kernel("ntk-fc", depth=2, w_std=1.4, b_std=0.3)
    real = torch.randn(50, 20, generator=g)
    xs = torch.randn(4, 20, generator=g, requires_grad=True)
    w = torch.randn(50, 4, generator=g, dtype=torch.float64)

    def check():
        x64 = xs.detach().double().requires_grad_(True)
        ref = _unfused(k, real.double(), x64)
        ref_grad, = torch.autograd.grad((ref * w).sum(), x64)
        out = fc_kernel(real, xs, 2, 1.4, 0.3, True)             # (50, 4): real is the node's right side
        grad, = torch.autograd.grad((out * w.float()).sum(), xs)
        torch.testing.assert_close(out.double(), ref.detach(), rtol=2e-5, atol=2e-5 * float(ref.detach().abs().max()))
        torch.testing.assert_close(grad.double(), ref_grad, rtol=2e-5, atol=2e-5 * float(ref_grad.abs().max()))

    weights = []                                   # the operands oneDNN's products read, call by call
    linear = fc_fused._ONEDNN_LINEAR
    monkeypatch.setattr(fc_fused, "_ONEDNN_LINEAR", lambda x, w, *a: weights.append(w.data_ptr()) or linear(x, w, *a))
    kept, read = [], []
    for _ in range(3):
        weights.clear()
        check()
        kept.append(sum(e.kept is not None for e in fc_fused._FIXED))
        read.append(list(weights))
    assert kept == [0, 1, 1]                       # first sighting remembered, second copied, then reused
    copy = next(e.kept for e in fc_fused._FIXED if e.kept is not None)
    assert copy.shape == (20, 50) and copy.is_contiguous() and torch.equal(copy, real.T)
    # oneDNN's products read the copy where they are the faster (MKL's are not seen here)
    assert copy.data_ptr() not in read[0] and read[2] == [copy.data_ptr()] * [forward, gradient].count("onednn")
    real[7].mul_(3.0)                              # bumps the version: the old copy must not be read
    check()


@pytest.mark.parametrize("forward,gradient", [("mkl", "mkl"), ("onednn", "onednn"), ("mkl", "rows")])
@pytest.mark.parametrize("constant", [5, 1, 0])
def test_constant_columns_of_a_kept_operand_are_folded_out_exactly(forward, gradient, constant, monkeypatch):
    """A kept operand whose columns are constant over its rows (0.0 and −0.42 here, as standardised
    MNIST's borders) is kept as its varying columns alone when enough of them are constant
    (CONST_MIN_FRACTION, 1/16 of 40 columns: 5 are folded, 1 is not): the forward x Xᵀ, the gradient
    product G X and the kernel's values and gradients match float64 references on every call (the
    gradient by each of its paths)."""
    fc_fused = _kept_products(monkeypatch, forward, gradient)
    g = torch.Generator().manual_seed(5)
    real = torch.randn(60, 40, generator=g)
    cols = [3, 17, 18, 30, 39][:constant]
    real[:, cols] = torch.tensor([0.0, -0.42, 0.0, 1.5, -0.42])[:constant]
    x = torch.randn(7, 40, generator=g)
    G = torch.randn(7, 60, generator=g)
    ref_f, ref_g = x.double() @ real.double().T, G.double() @ real.double()
    for call in range(3):
        out_f, out_g = fc_fused.mm_nt(x, real, fixed=True), fc_fused.mm_nn(G, real)
        torch.testing.assert_close(out_f.double(), ref_f, rtol=1e-5, atol=1e-5 * float(ref_f.abs().max()))
        torch.testing.assert_close(out_g.double(), ref_g, rtol=1e-5, atol=1e-5 * float(ref_g.abs().max()))
    entry, = fc_fused._FIXED
    folded = constant if constant >= 40 * fc_fused.CONST_MIN_FRACTION else 0
    assert entry.kept.shape == (40 - folded, 60) and entry.kept.is_contiguous()
    assert (entry.const_cols is None) == (folded == 0)
    if folded:
        assert entry.const_cols.tolist() == cols and torch.equal(entry.const, real[0, cols])
        assert torch.equal(entry.kept, real[:, [c for c in range(40) if c not in cols]].T)
    assert (entry.rows is not None) == (gradient == "rows")
    if gradient == "rows":
        assert entry.rows.is_contiguous() and torch.equal(entry.rows, entry.kept.T)
    k = make_kernel("ntk-fc", depth=2, w_std=1.4, b_std=0.3)
    xs = torch.randn(7, 40, generator=g, requires_grad=True)
    w = torch.randn(60, 7, generator=g, dtype=torch.float64)
    x64 = xs.detach().double().requires_grad_(True)
    ref = _unfused(k, real.double(), x64)
    ref_grad, = torch.autograd.grad((ref * w).sum(), x64)
    for _ in range(2):
        out = fc_kernel(real, xs, 2, 1.4, 0.3, True)                # real is the node's (kept) right side
        grad, = torch.autograd.grad((out * w.float()).sum(), xs)
        torch.testing.assert_close(out.double(), ref.detach(), rtol=2e-5, atol=2e-5 * float(ref.detach().abs().max()))
        torch.testing.assert_close(grad.double(), ref_grad, rtol=2e-5, atol=2e-5 * float(ref_grad.abs().max()))


def test_the_forward_path_from_a_kept_operand_is_measured_once(monkeypatch):
    """Both forward paths and both gradient paths from a kept transpose equal float64 products to
    float32 rounding; the faster of each is measured on the kept operand's first use and reused after."""
    from engine.kernels import fc_fused
    if fc_fused._ONEDNN_LINEAR is None:
        pytest.skip("torch built without oneDNN")
    monkeypatch.setattr(fc_fused, "_FIXED", [])
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(10, 784, generator=g), torch.randn(2000, 784, generator=g)
    ref = x.double() @ w.double().T
    scale = float((x.double().abs() @ w.double().abs().T).max())
    for how in fc_fused.FORWARD_PATHS:
        assert float((fc_fused._kept_forward(x, w.T.contiguous(), how).double() - ref).abs().max()) <= 1e-6 * scale
    G = torch.randn(10, 2000, generator=g)
    ref_g = G.double() @ w.double()
    scale_g = float((G.double().abs() @ w.double().abs()).max())
    entry = fc_fused._Fixed(w, identity_key(w)[1])
    entry.keep(w)
    for how in fc_fused.GRADIENT_PATHS:
        assert float((fc_fused._kept_gradient(G, entry, how).double() - ref_g).abs().max()) <= 1e-6 * scale_g
    measured = []
    faster = fc_fused._faster_forward
    monkeypatch.setattr(fc_fused, "_faster_forward", lambda *a: measured.append(faster(*a)) or measured[-1])
    for _ in range(4):
        out = fc_fused.mm_nt(x, w, fixed=True)
        assert float((out.double() - ref).abs().max()) <= 1e-6 * scale
    assert len(measured) == 1 and measured[0] in fc_fused.FORWARD_PATHS
    threads = torch.get_num_threads()
    assert [e.forward for e in fc_fused._FIXED] == [{threads: measured[0]}]
    gradients = []
    faster_g = fc_fused._faster_gradient
    monkeypatch.setattr(fc_fused, "_faster_gradient", lambda *a: gradients.append(faster_g(*a)) or gradients[-1])
    for _ in range(3):
        out = fc_fused.mm_nn(G, w)
        assert float((out.double() - ref_g).abs().max()) <= 1e-6 * scale_g
    assert len(gradients) == 1 and fc_fused._FIXED[0].gradient == {threads: gradients[0]}
    # the row-major copy is kept only where the gradient takes it
    assert (fc_fused._FIXED[0].rows is not None) == (gradients[0] == "rows")
    other = 1 if threads > 1 else 2                          # a run's steps may change the thread count
    torch.set_num_threads(other)
    try:
        fc_fused.mm_nt(x, w, fixed=True)
        fc_fused.mm_nt(x, w, fixed=True)
    finally:
        torch.set_num_threads(threads)
    assert len(measured) == 2 and set(fc_fused._FIXED[0].forward) == {threads, other}


@pytest.mark.parametrize("name", ["nngp-fc", "ntk-fc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_zero_input_without_bias_gives_finite_values(name, dtype, angle_method):
    # b_std = 0 and an all-zero image: its variance and every product with it are 0 (θ undefined); the
    # kernel's entries with it are 0 in the unfused recursion (atan2(0, 0) = 0) and must be finite and
    # equal here, in the fused node (with gradients) and the in-place evaluation (without)
    k = make_kernel(name, depth=2, w_std=1.0, b_std=0.0)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 11, dtype=dtype, generator=g)
    a[2] = 0.0
    b = torch.randn(7, 11, dtype=dtype, generator=g)
    ref = _unfused(k, a, b)
    with torch.no_grad():
        plain = k(a, b)
    fused = k(a.clone().requires_grad_(True), b)
    for out in (plain, fused.detach()):
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert (ref[2] == 0).all()
    # k(a, a): on its diagonal s = q = 0 at the zero image, where π/2 + atan(q/s) is 0/0
    ref_aa = _unfused(k, a, a, 0)
    with torch.no_grad():
        plain_aa = k(a)
    fused_aa = k(a.clone().requires_grad_(True))
    for out in (plain_aa, fused_aa.detach()):
        assert torch.isfinite(out).all(), angle_method
        torch.testing.assert_close(out, ref_aa, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["nngp-fc", "ntk-fc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_near_duplicates_without_gradients_are_as_close_to_the_exact_value(name, dtype, angle_method):
    # without gradients the radicand is clamped at the dtype's tiny, with them at ε q11 q22 (the fused
    # node keeps its gradient finite). For pairs closer than √ε in angle the two differ (float32 NTK:
    # ~2e-4), and both are as far from the exact value, k(x, x) (θ = 0), as the dtype's rounding makes them
    g = torch.Generator().manual_seed(0)
    k = make_kernel(name, depth=3)
    a = torch.randn(12, 50, generator=g, dtype=dtype)
    b = a + 1e-9 * torch.randn(12, 50, generator=g, dtype=dtype)
    with torch.no_grad():
        plain = k(a, b).diagonal().double()
        exact = k.diag(a.double())
    fused = k(a.clone().requires_grad_(True), b).detach().diagonal().double()
    err_plain = ((plain - exact).abs() / exact).max().item()
    err_fused = ((fused - exact).abs() / exact).max().item()
    assert err_plain <= 2 * err_fused + 64 * torch.finfo(dtype).eps, (err_plain, err_fused)


@pytest.mark.parametrize("ntk", [False, True])
@pytest.mark.parametrize("depth", [1, 3])
def test_column_blocks_with_the_symmetric_block_give_the_whole_gradient(ntk, depth):
    """[k(x, R), k(x, x)] as one tile (fused_with_self, engine.gap_step and engine.kip): the values of
    the two blocks, and the left-side gradient with G_R and G_S + G_Sᵀ (fused_with_self_backward) equal
    autograd's gradient of Σ G_R ∘ k(x, R) + Σ G_S ∘ k(x, x) through both arguments of k(x, x)."""
    from engine.kernels.fc_fused import first_variances, fused_backward, fused_with_self, fused_with_self_backward
    g = torch.Generator().manual_seed(depth + 7 * ntk)
    k = make_kernel("ntk-fc" if ntk else "nngp-fc", depth=depth, w_std=1.4, b_std=0.3)
    w2, b2 = 1.4 ** 2, 0.3 ** 2
    x, R = torch.randn(6, 9, dtype=torch.float64, generator=g), torch.randn(13, 9, dtype=torch.float64, generator=g)
    G_R, G_S = (torch.randn(6, 13, dtype=torch.float64, generator=g),
                torch.randn(6, 6, dtype=torch.float64, generator=g))          # G_S not symmetric
    vx = first_variances(x, w2, b2, keep=False)
    K_R, K_S, saved = fused_with_self(x, R, vx, depth, w2, b2, ntk)
    rx = x.clone().requires_grad_(True)
    ref_R, ref_S = _unfused(k, rx, R), _unfused(k, rx, rx, 0)
    torch.testing.assert_close(K_R, ref_R.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(K_S, ref_S.detach(), rtol=1e-12, atol=1e-12)
    ref, = torch.autograd.grad((ref_R * G_R).sum() + (ref_S * G_S).sum(), rx)
    got = fused_with_self_backward(saved, G_R, G_S)
    torch.testing.assert_close(got, ref, rtol=1e-11, atol=1e-11 * float(ref.abs().max()))
    with pytest.raises(ValueError, match="left side only"):
        fused_backward(saved, torch.cat([G_R, G_S], 1), True, True)


def test_thin_product_of_a_tile_slice_equals_float64():
    # k rᵀ for a strided column block of a tile and a few-row r (KIP's K_SB R, DGKIP's scores)
    from engine.kernels.fc_fused import mm_nt_thin
    g = torch.Generator().manual_seed(8)
    tile, r = torch.randn(30, 230, generator=g), torch.randn(4, 200, generator=g)
    k = tile[:, :200]
    out = mm_nt_thin(k, r)
    ref = k.double() @ r.double().T
    assert out.shape == (30, 4)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
