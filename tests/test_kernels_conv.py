"""nngp-conv / ntk-conv against independent references: a slow loop implementation of the
neural-tangents recursion, exact identities with the FC kernels, and Monte-Carlo estimates from
finite random ConvNets (the check on the fan-in / zero-padding conventions)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.kernels import make_kernel

W_STD, B_STD = math.sqrt(2.0), 0.3


def images(n: int, c: int = 2, h: int = 5, w: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g, dtype=torch.float64) + 0.3


# -- slow reference: explicit loops over pixels and filter offsets ---------------------------------
def _conv_cov(q: np.ndarray, w2: float, b2: float, valid_count: bool = False) -> np.ndarray:
    """W² · (3×3 zero-padded window sum of q) / 9 + b² per pixel; ``valid_count`` divides by the
    number of in-image taps instead (the convention neural-tangents does NOT use)."""
    h, w = q.shape
    out = np.zeros_like(q)
    for i in range(h):
        for j in range(w):
            s, count = 0.0, 0
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    if 0 <= i + di < h and 0 <= j + dj < w:
                        s += q[i + di, j + dj]
                        count += 1
            out[i, j] = w2 * s / (count if valid_count else 9) + b2
    return out


def _relu(q12: float, q11: float, q22: float, same: bool) -> tuple[float, float]:
    """Arc-cosine map of one covariance and its derivative factor (via acos; θ = 0 for k(x, x))."""
    c = 1.0 if same else max(-1.0, min(1.0, q12 / math.sqrt(q11 * q22)))
    t = math.acos(c)
    return (math.sqrt(q11 * q22) * (math.sin(t) + (math.pi - t) * c) / (2 * math.pi),
            (math.pi - t) / (2 * math.pi))


def reference(x: np.ndarray, y: np.ndarray, depth: int, w_std: float = W_STD, b_std: float = B_STD,
              ntk: bool = False, valid_count: bool = False) -> float:
    """k(x, y) for one pair of (C, H, W) images, neural-tangents' Conv/Relu/Flatten/Dense recursion."""
    w2, b2 = w_std ** 2, b_std ** 2
    conv = lambda q: _conv_cov(q, w2, b2, valid_count)
    box = lambda q: _conv_cov(q, 1.0, 0.0, valid_count)
    c, h, w = x.shape
    same = np.array_equal(x, y)
    q12, q11, q22 = conv((x * y).sum(0) / c), conv((x * x).sum(0) / c), conv((y * y).sum(0) / c)
    tangent = q12.copy()
    for layer in range(depth):
        r12, dot = np.zeros_like(q12), np.zeros_like(q12)
        for i in range(h):
            for j in range(w):
                r12[i, j], dot[i, j] = _relu(q12[i, j], q11[i, j], q22[i, j], same)
        tangent = tangent * dot
        if layer == depth - 1:
            out = w2 * r12.mean() + b2
            return out + w2 * tangent.mean() if ntk else out
        q12, q11, q22 = conv(r12), conv(q11 / 2), conv(q22 / 2)
        tangent = q12 + w2 * box(tangent)


def reference_matrix(a: torch.Tensor, b: torch.Tensor, depth: int, **kw) -> np.ndarray:
    a, b = a.numpy(), b.numpy()
    return np.array([[reference(x, y, depth, **kw) for y in b] for x in a])


@pytest.mark.parametrize("ntk", [False, True])
@pytest.mark.parametrize("depth", [1, 2])
def test_matches_loop_reference(depth, ntk):
    a, b = images(3, seed=1), images(2, h=5, w=5, seed=2)
    k = make_kernel("ntk-conv" if ntk else "nngp-conv", depth=depth, w_std=W_STD, b_std=B_STD)
    np.testing.assert_allclose(k(a, b).numpy(), reference_matrix(a, b, depth, ntk=ntk), rtol=0, atol=1e-10)
    np.testing.assert_allclose(k(a).numpy(), reference_matrix(a, a, depth, ntk=ntk), rtol=0, atol=1e-10)


def test_matches_loop_reference_non_square_three_channels():
    a = images(3, c=3, h=4, w=6, seed=3)
    k = make_kernel("nngp-conv", depth=3, w_std=1.3, b_std=0.2)
    np.testing.assert_allclose(k(a).numpy(), reference_matrix(a, a, 3, w_std=1.3, b_std=0.2),
                               rtol=0, atol=1e-10)


@pytest.mark.parametrize("ntk", [False, True])
def test_filter_size_one_is_pixel_average_of_fc_kernel(ntk):
    """With 1×1 filters every pixel is an independent MLP on its channel vector; Flatten + Dense
    averages the pixels: k_conv(x, y) = mean_p k_fc(x[:, p], y[:, p]) exactly (any H × W)."""
    a, b = images(3, c=4, h=3, w=4, seed=4), images(2, c=4, h=3, w=4, seed=5)
    kind = "ntk" if ntk else "nngp"
    conv = make_kernel(f"{kind}-conv", depth=2, w_std=W_STD, b_std=B_STD, filter_size=1)
    fc = make_kernel(f"{kind}-fc", depth=2, w_std=W_STD, b_std=B_STD)
    pix = lambda t: t.permute(2, 3, 0, 1).reshape(-1, t.shape[0], t.shape[1])  # (H·W, n, C)
    expected = torch.stack([fc(pa, pb) for pa, pb in zip(pix(a), pix(b))]).mean(0)
    torch.testing.assert_close(conv(a, b), expected, rtol=0, atol=1e-12)


def test_one_pixel_image_fan_in_convention():
    """On a 1×1 image only the centre tap of a 3×3 'SAME' filter sees data, but the fan-in is still
    C·9: the first conv acts as a Dense layer on x/3. So depth-1 nngp-conv(x) = nngp-fc(x / 3), and it
    is *not* nngp-fc(x)."""
    x = images(4, c=5, h=1, w=1, seed=6)
    conv = make_kernel("nngp-conv", depth=1, w_std=W_STD, b_std=B_STD)(x)
    fc = make_kernel("nngp-fc", depth=1, w_std=W_STD, b_std=B_STD)
    torch.testing.assert_close(conv, fc(x.flatten(1) / 3), rtol=0, atol=1e-12)
    assert (conv - fc(x.flatten(1))).abs().max() > 0.1


def _finite_convnet_kernel(x: torch.Tensor, width: int, depth: int, gen: torch.Generator) -> torch.Tensor:
    """E over the readout of f(x)f(x)ᵀ for one random finite ConvNet (NTK parameterisation:
    conv weights N(0, W²/(C_in·9)), biases N(0, b²), zero padding); the readout Dense(1) is
    integrated out exactly: W² · ⟨h(x), h(x')⟩ / (width·H·W) + b²."""
    h = x
    for _ in range(depth):
        c_in = h.shape[1]
        w = torch.randn(width, c_in, 3, 3, generator=gen, dtype=x.dtype) * (W_STD / math.sqrt(c_in * 9))
        b = torch.randn(width, generator=gen, dtype=x.dtype) * B_STD
        h = torch.relu(F.conv2d(h, w, b, padding=1))
    f = h.flatten(1)
    return W_STD ** 2 * f @ f.T / f.shape[1] + B_STD ** 2


@pytest.mark.parametrize("depth,width,draws", [(1, 256, 30), (2, 256, 24)])
def test_monte_carlo_finite_convnets(depth, width, draws):
    """The mean kernel of many random finite ConvNets matches nngp-conv within a few standard errors
    (plus the O(1/width) finite-width bias for depth 2), and rejects the alternative border convention
    (dividing by the number of in-image taps)."""
    x = images(4, c=2, h=5, w=5, seed=7)
    gen = torch.Generator().manual_seed(8)
    samples = torch.stack([_finite_convnet_kernel(x, width, depth, gen) for _ in range(draws)])
    mean, se = samples.mean(0), samples.std(0) / math.sqrt(draws)
    exact = make_kernel("nngp-conv", depth=depth, w_std=W_STD, b_std=B_STD)(x)
    bias = 0.0 if depth == 1 else 2.0 / width * exact.abs()
    z = (mean - exact).abs() / (4 * se + bias)
    assert z.max() < 1, ((mean - exact) / se)
    wrong = torch.from_numpy(reference_matrix(x, x, depth, valid_count=True))
    assert ((mean - wrong).abs() / se).max() > 10


# -- kernel properties --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["nngp-conv", "ntk-conv"])
def test_symmetric_psd_diag_and_tiling(name):
    x = images(12, c=2, h=6, w=6, seed=9)
    k = make_kernel(name, depth=3)
    K = k(x)
    torch.testing.assert_close(K, K.T, rtol=0, atol=1e-14)
    ev = torch.linalg.eigvalsh(K)
    assert ev.min() >= -1e-8 * ev.max()
    torch.testing.assert_close(k.diag(x), K.diagonal(), rtol=0, atol=1e-12)
    tiny = make_kernel(name, depth=3, tile_bytes=1)            # one row per tile
    assert tiny.tile_rows(x, x.shape[0]) == 1 and k.tile_rows(x, x.shape[0]) == x.shape[0]
    torch.testing.assert_close(tiny(x), K, rtol=0, atol=1e-12)
    torch.testing.assert_close(tiny(x[:5], x[5:]), K[:5, 5:], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["nngp-conv", "ntk-conv"])
def test_gradcheck(name):
    a = images(2, c=1, h=3, w=3, seed=10).requires_grad_()
    b = images(2, c=1, h=3, w=3, seed=11).requires_grad_()
    k = make_kernel(name, depth=2)
    assert torch.autograd.gradcheck(lambda a, b: k(a, b), (a, b))
    assert torch.autograd.gradcheck(lambda a: k(a), (a,))          # diagonal entries included
    assert torch.autograd.gradcheck(lambda a: k.diag(a), (a,))


def test_float32_gradients_finite_and_close():
    x = images(6, c=1, h=8, w=8, seed=12)
    k = make_kernel("nngp-conv")
    x32 = x.float().requires_grad_()
    K32 = k(x32)
    K32.sum().backward()
    assert torch.isfinite(x32.grad).all()
    torch.testing.assert_close(K32.double(), k(x), rtol=1e-5, atol=1e-6)


def test_params_registry_and_layout():
    k = make_kernel("nngp-conv")
    assert k.params() == {"depth": 3, "w_std": math.sqrt(2.0), "b_std": 0.1, "filter_size": 3}
    assert k.layout == "image" and not k.explicit
    again = make_kernel("nngp-conv", **json.loads(json.dumps(k.params())))
    x = images(3)
    torch.testing.assert_close(again(x), k(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="images"):
        k(torch.randn(3, 10))
    for bad in ({"depth": 0}, {"filter_size": 2}):
        with pytest.raises(ValueError):
            make_kernel("ntk-conv", **bad)
