"""Random-feature kernels (RFAD style): k(a, b) = φ(a) φ(b)ᵀ with φ the last-layer features of
``n_models`` randomly initialised finite ReLU networks of width ``width``.

Both networks use the NTK parameterisation of neural-tangents (weights N(0, W_std² / fan_in), biases
N(0, b_std²)) and end in the readout Dense(1, W_std, b_std) of the matching infinite-width kernel,
integrated out exactly: for one network with last hidden activations h (p units),

    E_readout[f(a) f(b)] = W_std² · h(a)·h(b) / p + b_std²,

so φ = [W_std · h / √(p · n_models) for each model, b_std] and φ(a)φ(b)ᵀ is the average over models.
As width → ∞ it converges to the network's NNGP (``rf-fc`` → ``nngp-fc``; ``rf-conv`` → the NNGP of
the ConvNet *with* average pooling, which has no cheap exact form).

Weights are drawn in float64 on the CPU from ``torch.Generator().manual_seed(seed)`` in a fixed order,
lazily per input shape, then cast to the input's dtype and device: same seed ⇒ identical features.
``redraw(seed)`` gives the same kernel with fresh networks; ``redraw_every`` (steps, 0 = never) is
stored for the distiller, which decides when to call it.

``feature_dtype`` ("float32", "float64" or None = the input's dtype) is the precision the networks
run in (cuDNN's TF32 shortcut is switched off); φ is returned in the input's dtype. In float32 the
features of one image depend on the batch it is computed in at rounding level (about 1e-7
relative), so the engine computes each set's features once and reuses them wherever a certificate
combines them: G_S from one φ(x̃) (``Teacher.scores_and_gram``), test margins and predictions from
one φ(x_test) (``engine.certify.TestPoints``). ``rf-conv`` defaults to float32: CPU convolutions in
float64 have no fast kernels (128-wide ConvNets on 32 × 32 × 3 images: 16.7 ms per image against
6.3 ms in float32, measured on this 2-core machine), and a CIFAR-10 run's teacher and test sets are
60,000 images.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from engine.kernels.base import MAX_DEPTH, Kernel, _meta


@contextmanager
def _full_float32(device: torch.device) -> Iterator[None]:
    """cuDNN convolutions in true float32 (PyTorch lets them use TF32, ~1e-3 relative error, by
    default): the features feed float64 certificates. The engine computes on one thread at a time."""
    if device.type != "cuda" or not torch.backends.cudnn.allow_tf32:
        yield
        return
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = True


class RandomFeatureKernel(Kernel):
    """Shared machinery: seeded weights, row-tiled features, k = φφᵀ, diag = ‖φ‖²."""

    explicit = True
    gram_from_features = True

    def __init__(self, width: int, n_models: int, depth: int, w_std: float = math.sqrt(2.0),
                 b_std: float = 0.1, seed: int = 0, redraw_every: int = 1, feature_dtype: str | None = None,
                 **kw: Any) -> None:
        super().__init__(**kw)
        if int(width) < 1 or int(n_models) < 1 or not 1 <= int(depth) <= MAX_DEPTH:
            raise ValueError(f"width and n_models must be ≥ 1, depth between 1 and {MAX_DEPTH}")
        if int(redraw_every) < 0:
            raise ValueError("redraw_every must be ≥ 0 (0 = never redraw)")
        if feature_dtype not in (None, "float32", "float64"):
            raise ValueError(f"feature_dtype must be 'float32', 'float64' or None (the input's); got {feature_dtype!r}")
        self.feature_dtype = feature_dtype
        self.width, self.n_models, self.depth = int(width), int(n_models), int(depth)
        self.w_std, self.b_std = float(w_std), float(b_std)
        self.seed, self.redraw_every = int(seed), int(redraw_every)
        self._cache: dict[tuple, list[torch.Tensor]] = {}

    def params(self) -> dict[str, Any]:
        return {"width": self.width, "n_models": self.n_models, "depth": self.depth,
                "w_std": self.w_std, "b_std": self.b_std, "seed": self.seed,
                "redraw_every": self.redraw_every, "feature_dtype": self.feature_dtype}

    def redraw(self, seed: int) -> "RandomFeatureKernel":
        """The same kernel with networks drawn from ``seed``."""
        return type(self)(**{**self.params(), "seed": int(seed)}, tile_bytes=self.tile_bytes)

    # -- to implement ----------------------------------------------------------
    def _weight_shapes(self, in_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        """Shapes of the standard-normal draws for one input shape (without the batch axis)."""
        raise NotImplementedError

    def _features(self, x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
        """φ of a prepared batch without the bias column, ``(n, p)``."""
        raise NotImplementedError

    def feature_bytes_per_row(self, x: torch.Tensor) -> int:
        """Peak temporary bytes per input row while computing features (for tiling)."""
        raise NotImplementedError

    def _feature_temp_bytes_per_row(self, chw: tuple[int, ...], dtype: torch.dtype) -> int:
        """Bytes per row of one tile's temporaries without autograd; this default: the autograd bound."""
        return int(self.feature_bytes_per_row(_meta(1, chw, dtype)))

    # -- costs ---------------------------------------------------------------------
    @property
    def feature_rate(self) -> str:
        return "flops32" if self.feature_dtype == "float32" else "flops"

    def feature_bytes(self, rows, chw, dtype, grad):
        """With autograd: the per-row bound of :meth:`feature_bytes_per_row` (backward included) and the
        output, for every row. Without: three times the output (tile list, concatenation, bias-column
        copy; glibc keeps the third of the freed tiles — measured 3.3–4.5 × n·p for ``rf-fc`` on
        4,000–8,000 rows) plus one tile of temporaries."""
        es = torch.empty((), dtype=dtype).element_size()
        p = self.feature_dim(chw)
        per_row = int(self.feature_bytes_per_row(_meta(1, chw, dtype)))
        if grad:
            return rows * (per_row + p * es)
        tile = max(1, min(rows, self.tile_bytes // max(1, per_row)))
        return 3 * rows * p * es + tile * self._feature_temp_bytes_per_row(chw, dtype)

    def diag_bytes(self, rows, chw):
        return self.feature_bytes(rows, chw, torch.float64, False)


    # -- shared ---------------------------------------------------------------
    def weights(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Standard-normal draws for inputs shaped like ``x`` (cached per shape, dtype, device)."""
        key = (tuple(x.shape[1:]), x.dtype, x.device)
        if key not in self._cache:
            gen = torch.Generator().manual_seed(self.seed)
            self._cache[key] = [torch.randn(s, generator=gen, dtype=torch.float64).to(x.device, x.dtype)
                                for s in self._weight_shapes(tuple(x.shape[1:]))]
        return self._cache[key]

    def features(self, a: torch.Tensor) -> torch.Tensor:
        """φ(a), ``(n, p)``, computed in row tiles bounded by ``tile_bytes``; differentiable in ``a``."""
        a = self.prepare(a)
        run = a if self.feature_dtype is None else a.to(getattr(torch, self.feature_dtype))
        w = self.weights(run)
        rows = max(1, min(a.shape[0], self.tile_bytes // max(1, self.feature_bytes_per_row(run))))
        with _full_float32(run.device):
            phi = torch.cat([self._features(run[i:i + rows], w) for i in range(0, a.shape[0], rows)]).to(a.dtype)
        return torch.cat([phi, torch.full_like(phi[:, :1], self.b_std)], dim=1)

    def __call__(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        fa = self.features(a)
        fb = fa if b is None or b is a else self.features(b)
        return fa @ fb.T

    def diag(self, a: torch.Tensor) -> torch.Tensor:
        f = self.features(a)
        return (f * f).sum(1)


class RandomFCKernel(RandomFeatureKernel):
    """Random features of ``nngp-fc``: ``n_models`` ReLU MLPs with ``depth`` hidden layers of ``width``."""

    name = "rf-fc"

    def __init__(self, width: int = 512, n_models: int = 4, depth: int = 1, **kw: Any) -> None:
        super().__init__(width=width, n_models=n_models, depth=depth, **kw)

    def _weight_shapes(self, in_shape):
        m, n = self.n_models, self.width
        shapes = [(in_shape[0], m, n), (m, n)]
        return shapes + [(m, n, n), (m, n)] * (self.depth - 1)

    def _features(self, x, weights):
        d, n = x.shape[1], self.width
        z = torch.einsum("nd,dmk->nmk", x, weights[0]) * (self.w_std / math.sqrt(d)) + self.b_std * weights[1]
        for w, b in zip(weights[2::2], weights[3::2]):
            z = torch.einsum("nmk,mkj->nmj", torch.relu(z), w) * (self.w_std / math.sqrt(n)) + self.b_std * b
        return torch.relu(z).reshape(x.shape[0], -1) * (self.w_std / math.sqrt(n * self.n_models))

    def feature_dim(self, chw):
        return self.n_models * self.width + 1

    def _feature_temp_bytes_per_row(self, chw, dtype):
        """Without autograd: the input and five (n_models·width) arrays per layer."""
        es = torch.empty((), dtype=dtype).element_size()
        return es * (math.prod(chw) + 5 * self.depth * self.n_models * self.width)

    def feature_cost(self, chw):
        mw = self.n_models * self.width
        return 2 * math.prod(chw) * mw + (self.depth - 1) * 2 * mw * self.width, 4 * mw * self.depth

    def feature_bytes_per_row(self, x):
        # per hidden layer ≈ 10 (n, n_models·width) arrays alive with autograd, backward included (measured)
        return x.element_size() * (2 * x.shape[1] + 10 * self.depth * self.n_models * self.width)


class RandomConvKernel(RandomFeatureKernel):
    """Random features of the ConvNet NNGP with pooling: ``n_models`` ConvNets of ``depth`` blocks
    [Conv 3×3 'same' (``width`` channels) → instance norm if ``norm`` → ReLU → AvgPool 2×2], flattened.

    Needs H, W ≥ 2^depth (28 → 14 → 7 → 3 for MNIST, as floor pooling does). ``norm=False`` (RFAD's
    choice) keeps φφᵀ an estimate of the NNGP; instance norm has no such infinite-width counterpart here.
    """

    name = "rf-conv"
    layout = "image"

    def __init__(self, width: int = 64, n_models: int = 4, depth: int = 3, norm: bool = False,
                 feature_dtype: str | None = "float32", **kw: Any) -> None:
        super().__init__(width=width, n_models=n_models, depth=depth, feature_dtype=feature_dtype, **kw)
        self.norm = bool(norm)

    def params(self):
        return {**super().params(), "norm": self.norm}

    def _weight_shapes(self, in_shape):
        c, h, w = in_shape
        if min(h, w) < 2 ** self.depth:
            raise ValueError(f"rf-conv with depth {self.depth} needs images of at least "
                             f"{2 ** self.depth}×{2 ** self.depth} pixels; got {h}×{w}")
        out, shapes = self.n_models * self.width, []
        for layer in range(self.depth):                    # conv filters, then biases, per block
            shapes += [(out, c if layer == 0 else self.width, 3, 3), (out,)]
        return shapes

    def _features(self, x, weights):
        h = x
        for layer, (w, b) in enumerate(zip(weights[0::2], weights[1::2])):
            # all models at once: one conv with n_models·width outputs, then grouped per model
            fan_in = w.shape[1] * 9
            z = F.conv2d(h, w * (self.w_std / math.sqrt(fan_in)), b * self.b_std, padding=1,
                         groups=1 if layer == 0 else self.n_models)
            if self.norm:
                z = F.instance_norm(z)
            h = F.avg_pool2d(torch.relu(z), 2)
        p = self.width * h.shape[-2] * h.shape[-1]
        return h.reshape(x.shape[0], -1) * (self.w_std / math.sqrt(p * self.n_models))

    def feature_dim(self, chw):
        c, h, w = chw
        self._weight_shapes((c, h, w))                      # the size check
        side = 2 ** self.depth
        return self.n_models * self.width * (h // side) * (w // side) + 1

    def feature_cost(self, chw):
        c, h, w = chw
        flops, elements, cin = 0.0, 0.0, c
        for layer in range(self.depth):
            pixels = (h // 2 ** layer) * (w // 2 ** layer)
            flops += 2 * pixels * self.n_models * self.width * cin * 9
            elements += 4 * pixels * self.n_models * self.width
            cin = self.width
        return flops, elements

    def feature_bytes_per_row(self, x):
        h, w = x.shape[-2:]
        pixels = sum((h // 2 ** layer) * (w // 2 ** layer) for layer in range(self.depth))
        # ≈ 4 activation maps per block alive with autograd, backward included (measured: a bit less)
        return x.element_size() * (x[0].numel() + 4 * self.n_models * self.width * pixels)
