"""Kernels on flat vectors: linear, RBF, and the NNGP / NTK of a fully connected ReLU network.

The FC network kernels follow neural-tangents exactly: ``stax.serial(*[Dense(W_std, b_std), Relu]
* depth, Dense(W_std, b_std))`` in the NTK parameterisation, inputs of dimension d. With
q(x, x') the pre-activation covariance:

    q₁ = W_std² · xᵀx' / d + b_std²                       (first Dense; Θ₁ = q₁)
    Relu:  q ↦ √(q q') / 2π · (sin θ + (π − θ) cos θ),  Θ ↦ Θ · (π − θ) / 2π,  cos θ = q(x,x') / √(q q')
    Dense: q ↦ W_std² · q + b_std²,                      Θ ↦ q_new + W_std² · Θ
"""
from __future__ import annotations

import functools
import math
from typing import Any

import torch

from engine.kernels.angle import complement_into
from engine.kernels.base import MAX_DEPTH, Kernel, median_distance, row_sq_norms
from engine.kernels.fc_fused import fc_kernel
from engine.timing import fastest_of

# bytes per array of a sub-tile of the in-place recursion (2^17 float32 entries, 2^16 float64): its
# three or four arrays stay in the cores' L2 between steps, and each elementwise op is still large
# enough that torch splits it over threads (its grain is 32,768 elements). 2,000 × 2,000 × 784, ntk-fc
# depth 3, 2 threads, interleaved: float32 2^17 entries 0.57–0.63 of matmul throughput against
# 0.45–0.49 at 2^15 (AMD EPYC); on an Intel Xeon (1.25 MiB of L2 a core) float32 2^16 / 2^18 entries
# took 1.05× / 1.10× the time of 2^17, and float64 2^16 entries 0.93× that of 2^17 (whose 4 MiB spill
# L2), 2^15 1.20×.
CACHE_BYTES = 2**19

# The in-place kernel's √ of the radicand: ``sqrt_``, or s · s^(−1/2) (rsqrt, then a product). Which is
# faster depends on the processor, by up to 5×: ns an entry, 2^16 float64 entries, sqrt_ against rsqrt
# and the product: AMD EPYC with AVX-512, 2 threads, 1.0 against 0.69 (depth-3 float64 kernels 0.95–0.97×
# the time with rsqrt; float32 0.25 against 0.18); Intel Xeon with AMX, 0.31 against 1.48 on one thread,
# 0.24 against 0.79 on two. So it is measured once per dtype and thread count on the CPU (the minimum
# of 5 interleaved rounds on one sub-tile); ``sqrt_`` elsewhere, and unless rsqrt takes at most
# ROOT_MARGIN of its time (near a tie the one pass stays).
ROOT_METHODS = ("sqrt", "rsqrt")
ROOT_MARGIN = 0.8
_root_chosen: dict[tuple[torch.dtype, int], str] = {}


def root_into(s: torch.Tensor, scratch: torch.Tensor, how: str | None = None) -> torch.Tensor:
    """√s in place (s ≥ 0; ``scratch`` s-shaped, overwritten); ``how``: one of :data:`ROOT_METHODS`, else
    :func:`root_method`'s choice."""
    how = how or root_method(s.dtype, s.device)
    if how == "rsqrt":
        return s.mul_(torch.rsqrt(s, out=scratch))
    return s.sqrt_()


def root_method(dtype: torch.dtype, device: torch.device | str = "cpu") -> str:
    """The faster of :data:`ROOT_METHODS` here for ``dtype`` (module comment above)."""
    if torch.device(device).type != "cpu":
        return "sqrt"
    key = (dtype, torch.get_num_threads())
    if key not in _root_chosen:
        entries = CACHE_BYTES // torch.tensor([], dtype=dtype).element_size()
        s = torch.rand(entries, generator=torch.Generator().manual_seed(0), dtype=dtype).add_(0.5)
        scratch = torch.empty_like(s)           # (repeated roots keep s in [0.7, 1.3]: no subnormals)
        best = fastest_of({how: functools.partial(root_into, s, scratch, how) for how in ROOT_METHODS}, 5)
        _root_chosen[key] = "rsqrt" if best["rsqrt"] < ROOT_MARGIN * best["sqrt"] else "sqrt"
    return _root_chosen[key]


# with gradients, the FC network kernels run as one autograd node with a hand-written backward
# (engine.kernels.fc_fused); False takes the autograd graph of :meth:`FCNetworkKernel._recursion`
FUSED = True

class LinearKernel(Kernel):
    """k(a, b) = aᵀb / d + bias²; explicit features φ(a) = [a / √d, bias]."""

    name = "linear"
    explicit = True

    def __init__(self, bias: float = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.bias = float(bias)

    def params(self) -> dict[str, Any]:
        return {"bias": self.bias}

    def _block(self, a, b, diag_offset=None):
        return a @ b.T / a.shape[1] + self.bias ** 2

    def diag(self, a):
        a = self.prepare(a)
        return row_sq_norms(a) / a.shape[1] + self.bias ** 2

    def feature_cost(self, chw: tuple[int, ...]) -> tuple[float, float]:
        """(flops, elements) of φ for one input: one scaling of its d values."""
        return float(math.prod(chw)), float(math.prod(chw))

    def feature_dim(self, chw):
        return math.prod(chw) + (1 if self.bias else 0)

    def feature_bytes(self, rows, chw, dtype, grad):
        """The scaled copy (rows, d), and its concatenation with the bias column when there is one."""
        return rows * self.feature_dim(chw) * torch.empty((), dtype=dtype).element_size() * (2 if self.bias else 1)

    def diag_bytes(self, rows, chw):
        """The squared inputs (rows, d) in float64."""
        return rows * math.prod(chw) * 8

    def pair_cost(self, chw):
        return 2.0 * math.prod(chw), 0.0

    def feature_seconds(self, chw, rates):
        """One scaling and one copy of each of the d values, at the simple elementwise rate."""
        return 2 * math.prod(chw) * rates["simple"]

    def features(self, a):
        a = self.prepare(a)
        f = a / math.sqrt(a.shape[1])
        if self.bias:
            f = torch.cat([f, torch.full_like(f[:, :1], self.bias)], dim=1)
        return f


class RBFKernel(Kernel):
    """k(a, b) = exp(−‖a − b‖² / (2 σ²)); σ = ``bandwidth`` (None: median pairwise distance of the data)."""

    name = "rbf"

    def __init__(self, bandwidth: float | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        if bandwidth is not None and not bandwidth > 0:
            raise ValueError("rbf bandwidth must be positive")
        self.bandwidth = None if bandwidth is None else float(bandwidth)

    def params(self) -> dict[str, Any]:
        return {"bandwidth": self.bandwidth}

    def with_data_defaults(self, x):
        if self.bandwidth is not None:
            return self
        return RBFKernel(bandwidth=median_distance(x), tile_bytes=self.tile_bytes)

    def _block(self, a, b, diag_offset=None):
        if self.bandwidth is None:
            raise ValueError("rbf bandwidth unset: call with_data_defaults(x) first")
        sq = row_sq_norms(a)[:, None] + row_sq_norms(b)[None, :] - 2 * a @ b.T
        return torch.exp(-sq.clamp_min(0) / (2 * self.bandwidth ** 2))

    def diag(self, a):
        return torch.ones(a.shape[0], dtype=a.dtype, device=a.device)

    def pair_cost(self, chw):
        """The inner product, then a subtraction and an exponential (2 transcendental-op units)."""
        return 2.0 * math.prod(chw), 2.0


def _relu_step(q12, q11, q22, theta_ntk=None, diag_mask=None):
    """Arc-cosine ReLU maps for covariances q12 (n_a, n_b) with variances q11 (n_a, 1), q22 (1, n_b).

    θ is computed as atan2(√(q11 q22 − q12²), q12) with the radicand clamped at a tiny multiple of
    q11 q22: near θ = 0 the map's value moves only by O(θ²), and gradients stay finite on the diagonal.
    """
    norm2 = q11 * q22
    eps = 1e-20 if q12.dtype == torch.float64 else 1e-7
    sin_n = torch.sqrt(torch.maximum(norm2 - q12 * q12, eps * norm2))      # √(q11 q22) · sin θ
    if diag_mask is not None:                                               # k(x, x): θ = 0 exactly
        sin_n = torch.where(diag_mask, torch.zeros_like(sin_n), sin_n)
    theta = torch.atan2(sin_n, q12)
    new_q = (sin_n + (math.pi - theta) * q12) / (2 * math.pi)
    new_ntk = None if theta_ntk is None else theta_ntk * (math.pi - theta) / (2 * math.pi)
    return new_q, new_ntk


def fused_blocks(kernel: Kernel, x: torch.Tensor, n_real: int) -> bool:
    """Whether a step may hand-write the gradient of ``kernel``'s tile k(x, [real rows, x]) of
    ``n_real`` + m columns (engine.kip, engine.gap_step; engine.kernels.fc_fused.fused_with_self):
    ``kernel`` is an FC network kernel on the fused path and the tile fits one tile of its budget, as
    the autograd path with gradients would have it. ``x``: (m, d) flat, requiring gradients."""
    if not (isinstance(kernel, FCNetworkKernel) and kernel.fused):
        return False
    return kernel.tile_rows(x, n_real + x.shape[0]) >= x.shape[0]


class FCNetworkKernel(Kernel):
    """NNGP (``ntk=False``) or NTK (``ntk=True``) of a depth-``depth`` ReLU MLP (see module doc)."""

    def __init__(self, depth: int = 1, w_std: float = math.sqrt(2.0), b_std: float = 0.1,
                 ntk: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        if not 1 <= int(depth) <= MAX_DEPTH:
            raise ValueError(f"depth must be between 1 and {MAX_DEPTH}")
        self.depth, self.w_std, self.b_std, self.ntk = int(depth), float(w_std), float(b_std), bool(ntk)
        self.name = "ntk-fc" if ntk else "nngp-fc"

    def params(self) -> dict[str, Any]:
        return {"depth": self.depth, "w_std": self.w_std, "b_std": self.b_std}

    @property
    def fused(self) -> bool:
        """Whether blocks with gradients take the fused node (engine.kernels.fc_fused): :data:`FUSED`
        on, and W_std ≠ 0 (the node divides by the layers' variances)."""
        return FUSED and self.w_std != 0

    def bytes_per_pair(self, a):
        """Under autograd the fused node's arrays per pair (engine.kernels.fc_fused: 4 saved a layer for
        the NTK, 3 for the NNGP, and about 6 more at the backward's peak: 10 at depth 1); without it the
        block itself (the recursion runs in place over cache-sized sub-tiles, :meth:`_block_in_place`)."""
        if torch.is_grad_enabled() and a.requires_grad:
            return ((4 if self.ntk else 3) * self.depth + 6) * a.element_size()
        return a.element_size()

    def pair_cost(self, chw):
        """The inner product, then per layer the arc-cosine map: 3 transcendental-op units for the NNGP,
        4 for the NTK (fitted on 8×8 and 16×16×3 images, one thread, 1 vs 3 layers)."""
        return 2.0 * math.prod(chw), float((4 if self.ntk else 3) * self.depth)

    def _recursion(self, q12, q11, q22, diag_mask=None):
        w2, b2 = self.w_std ** 2, self.b_std ** 2
        ntk = q12 if self.ntk else None
        for _ in range(self.depth):
            q12_new, ntk = _relu_step(q12, q11, q22, ntk, diag_mask)
            # variances: the diagonal of the ReLU map is q / 2
            q11, q22 = w2 * q11 / 2 + b2, w2 * q22 / 2 + b2
            q12 = w2 * q12_new + b2
            if self.ntk:
                ntk = q12 + w2 * ntk
        return ntk if self.ntk else q12

    def _first(self, a, b):
        w2, b2, d = self.w_std ** 2, self.b_std ** 2, a.shape[1]
        q12 = w2 * (a @ b.T) / d + b2
        q11 = (w2 * row_sq_norms(a) / d + b2)[:, None]
        q22 = (w2 * row_sq_norms(b) / d + b2)[None, :]
        return q12, q11, q22

    def _block(self, a, b, diag_offset=None):
        if not (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)):
            return self._block_in_place(a, b, diag_offset)
        if self.fused:
            return fc_kernel(a, b, self.depth, self.w_std, self.b_std, self.ntk, diag_offset)
        mask = None
        if diag_offset is not None:
            rows = torch.arange(a.shape[0], device=a.device)[:, None] + diag_offset
            mask = rows == torch.arange(b.shape[0], device=a.device)[None, :]
        return self._recursion(*self._first(a, b), diag_mask=mask)

    @torch.no_grad()
    def _block_in_place(self, a, b, diag_offset=None):
        """:meth:`_block` without autograd (teacher, certificates, evaluation): the same formulas with
        every elementwise step in place, over sub-tiles of about :data:`CACHE_BYTES` bytes an array
        that stay in the CPU's cache between steps (the graph-building path allocates a new n_a × n_b
        tensor per operation and streams each through memory)."""
        w2, b2, d = self.w_std ** 2, self.b_std ** 2, a.shape[1]
        q12 = torch.mm(a, b.T)                       # ⟨a, b⟩: scaled to q₀ per sub-tile, in cache
        # the variances of every layer, computed once: q ↦ w²·q/2 + b²
        v1s, v2s = [(w2 * row_sq_norms(a) / d + b2)[:, None]], [(w2 * row_sq_norms(b) / d + b2)[None, :]]
        for _ in range(self.depth - 1):
            v1s.append(w2 * v1s[-1] / 2 + b2)
            v2s.append(w2 * v2s[-1] / 2 + b2)
        tiny = torch.finfo(q12.dtype).tiny
        rows = max(1, CACHE_BYTES // (q12.element_size() * max(1, q12.shape[1])))
        c1 = w2 / (2 * math.pi)
        # x ↦ α x + b² in one pass: torch.add(b², x, alpha=α, out=x) (x.mul_(α).add_(b²) makes two)
        bias = torch.tensor(b2, dtype=q12.dtype, device=q12.device)
        for i in range(0, q12.shape[0], rows):
            out = q = torch.add(bias, q12[i:i + rows], alpha=w2 / d, out=q12[i:i + rows])   # q₀
            ntk = None                      # the NTK's Θ once q₀ (= Θ₀) has been overwritten
            t, s = torch.empty_like(q), torch.empty_like(q)
            for layer, (v1, v2) in enumerate(zip(v1s, v2s)):
                torch.mul(v1[i:i + rows], v2, out=t)                  # q11 q22
                # √(q11 q22) · sin θ, the radicand clamped at the dtype's tiny, not at the gradient path's
                # ε q11 q22: without gradients no floor is needed, and θ ≈ 0 is the exact value where
                # q² ≥ q11 q22 (the floored value differs there by O(ε q): s ≈ √ε·√P, φ ≈ π − √ε, and
                # s + φ q moves by √ε (√P − q)); s > 0 keeps q/s finite for a zero input without bias
                torch.addcmul(t, q, q, value=-1.0, out=s).clamp_min_(tiny)
                root_into(s, t)                                       # √, in place (t: scratch)
                complement_into(s, q, t)                              # φ = π − θ
                if diag_offset is not None:                           # k(x, x): θ = 0 exactly, also for a
                    s.diagonal(diag_offset + i).zero_()               # zero input without bias (q = 0,
                    t.diagonal(diag_offset + i).fill_(math.pi)        # where π/2 + atan(q/s) is 0/0)
                if not self.ntk:
                    torch.add(bias, torch.addcmul(s, q, t, out=q), alpha=c1, out=q)   # Dense ∘ ReLU
                    continue
                # NTK: q' = c₁ (s + φ q) + b² into s's buffer, then Θ' = q' + c₁ Θ φ (Θ₀ = q₀); the last
                # layer writes Θ' into the output, the others into Θ's buffer, and q's buffer becomes
                # the next layer's scratch (no copy of q₀ first, none of Θ into the output last)
                theta = q if ntk is None else ntk
                torch.add(bias, torch.addcmul(s, q, t, out=s), alpha=c1, out=s)
                if layer + 1 == len(v1s):
                    torch.addcmul(s, theta, t, value=c1, out=out)
                else:
                    ntk = torch.empty_like(q) if ntk is None else ntk
                    torch.addcmul(s, theta, t, value=c1, out=ntk)
                    q, s = s, q
        return q12

    def diag(self, a):
        a = self.prepare(a)
        w2, b2, d = self.w_std ** 2, self.b_std ** 2, a.shape[1]
        q = w2 * row_sq_norms(a) / d + b2
        ntk = q.clone()
        for _ in range(self.depth):
            relu_q = q / 2                      # θ = 0: E[relu(u)²] = q / 2, E[relu'²] = 1/2
            ntk = ntk / 2
            q = w2 * relu_q + b2
            ntk = q + w2 * ntk
        return ntk if self.ntk else q
