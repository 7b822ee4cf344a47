"""The FC ReLU network kernels (NNGP / NTK, :mod:`engine.kernels.fc`) as one autograd node with a
hand-written backward: the distillation step's kernel between synthetic images (with gradients) and
fixed real ones.

Shapes: ``a`` (n_a, d), ``b`` (n_b, d), same dtype and device; the result is k(a, b), (n_a, n_b), in
the kernel's own units (those of the inputs' squared values times W_std², plus b_std²). Either input,
or both (the symmetric k(x, x)), may require gradients.

Forward, in the layout r × c with r ≤ c (the input with fewer rows on the left: MKL's ``mm`` of a
thin 10 × 784 by 784 × 2,000 product runs 1.7× faster than the 2,000 × 784 by 784 × 10 one; oneDNN,
which :func:`mm_nt` takes for large float32 products, runs both alike), the same
recursion as ``FCNetworkKernel._recursion``, with P = q₁₁ q₂₂ the outer product of the layer's variances:

    q₀ = W² ⟨a, b⟩ / d + b²,  Θ₀ = q₀
    s = √max(P − q², ε P)  (0 on the diagonal of k(x, x)),   φ = π − atan2(s, q)  (engine.kernels.angle)
    q' = W²/2π · (s + φ q) + b²,   Θ' = q' + W²/2π · Θ φ

Backward, by hand (c₁ = W²/2π; ∂(s + φ q)/∂q = φ, ∂(s + φ q)/∂P = s / 2P, ∂φ/∂q = z,
∂φ/∂P = −q z / 2P, with z = 1/s, and z = s/P where the radicand was clamped, z = 0 on the diagonal,
the derivatives autograd takes through the clamp and the mask of the unfused code):

    ḡ = g_q' + g_Θ'
    g_q = c₁ (ḡ φ + g_Θ' Θ z),   g_P = c₁ (ḡ s − g_Θ' Θ z q) / 2P,   g_Θ = c₁ g_Θ' φ

and P's gradient reaches the variances as row and column sums (∂P/∂q₁₁ = q₂₂), the variances'
recursion q ↦ W² q / 2 + b² being affine. The gradient in the inputs is then one matmul per input
that needs it, g_a = (W²/d) g_q₀ b + (2 W²/d) g_q₁₁ ∘ a, plus a row scale.

Saved for the backward: per layer q, s, ψ = θ − π = −φ (and Θ z for the NTK): 3 or 4 arrays of r × c
entries. The NTK's last layer computes Θ' = c₁ (s + φ (q + Θ)) + b² alone, and its backward folds
g_q₀ + g_Θ₀ into one pass; k(x, x) takes one matmul, (G + Gᵀ) x, for both sides.
"""
from __future__ import annotations

import functools
import math
import weakref
from typing import NamedTuple

import torch

from engine.kernels.angle import complement_into
from engine.kernels.base import identity_key, row_sq_norms
from engine.timing import fastest_of

_TWO_PI = 2 * math.pi


try:            # oneDNN's GEMM (what inductor calls): on an AMD EPYC, one thread, float32, the 10 × 784 by
    # 784 × 2,000 product of a KIP step took 0.32 ms against MKL's 0.54 ms (MKL takes its AVX2 path on
    # AMD processors; oneDNN dispatches on the instruction set)
    _ONEDNN_LINEAR = torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
except (AttributeError, RuntimeError):
    _ONEDNN_LINEAR = None


ONEDNN_MIN_MACS = 2**20

# Contiguous transposes Rᵀ (d, c) of fixed right-hand operands R (c, d): KIP's real pool when one batch
# is the whole pool, a DGKIP teacher's support images. A step's forward L Rᵀ and its gradient's G R then
# both read this one copy (each by the faster of MKL and oneDNN, measured on first use; the gradient
# may instead take a row-major copy, :data:`GRADIENT_PATHS`), where they
# read two before (a oneDNN-packed copy of R for the forward, R for the gradient): on an Intel Xeon,
# one thread, 2,000 × 784 pool, the KIP step took 0.88× (IPC 1) and 0.95× (IPC 10) the time,
# interleaved. The copy is made the second time a float32 CPU operand is seen unchanged in a product
# of at least ONEDNN_MIN_MACS multiply-adds (batches drawn anew every step never are); at most
# FIXED_ENTRIES operands of at most FIXED_MAX_ELEMENTS entries each (each copy is as large as the operand;
# an entry holds two where the gradient takes the row-major one).
FIXED_ENTRIES, FIXED_MAX_ELEMENTS = 4, 2**23


# Columns constant over a kept operand's rows (per-channel standardised MNIST's border pixels: 153 of
# 784 in the speed bench's 2,000-image pool) carry no information a product needs: with X = [X_V, 1 a_Cᵀ] (varying
# columns V, constant columns C of value a_C), x Xᵀ = x_V X_Vᵀ + (x_C a_C) 1ᵀ and G X = [G X_V,
# (G 1) a_Cᵀ]. The kept transpose then holds X_V alone, so both products read and multiply |V| of the
# d columns. Folded only where at least CONST_MIN_FRACTION of the columns are constant (the gather of
# x_V and the scatter of G X_V cost a few µs).
CONST_MIN_FRACTION = 1 / 16


class _Fixed:
    """A fixed operand's entry: a weak reference to its memory's owner, its identity key, its kept
    transpose (None until the second sighting; X_Vᵀ (|V|, c) where constant columns are folded, else
    Xᵀ (d, c)), the folded columns (``varying`` V and ``const_cols`` C as index tensors and ``const``
    a_C, (|C|,); all None when nothing is folded), and the forward product's measured path by thread
    count (a run's steps may switch between one thread and all, engine.device.StepThreads), and the
    gradient product's likewise; ``rows``, the kept operand row-major (X_V (c, |V|) or X), while the
    gradient product takes it (:data:`GRADIENT_PATHS`)."""
    __slots__ = ("owner", "key", "kept", "rows", "forward", "gradient", "varying", "const_cols", "const")

    def __init__(self, owner, key) -> None:
        self.owner, self.key, self.kept, self.rows = weakref.ref(owner), key, None, None
        self.forward: dict[int, str] = {}
        self.gradient: dict[int, str] = {}
        self.varying = self.const_cols = self.const = None

    def keep(self, w: torch.Tensor) -> None:
        """Keep ``w`` (c, d)'s transpose, its constant columns folded out where at least
        CONST_MIN_FRACTION of them are (not where all are, nor for a single row, c = 1: then every column
        is constant, and the whole transpose is kept)."""
        same = constant_columns(w)
        folded = int(same.sum())
        if CONST_MIN_FRACTION * w.shape[1] <= folded < w.shape[1]:
            self.varying, self.const_cols = (~same).nonzero().squeeze(1), same.nonzero().squeeze(1)
            self.const = w[0].index_select(0, self.const_cols)
            self.kept = w.index_select(1, self.varying).T.contiguous()
        else:
            self.kept = w.T.contiguous()

    def path(self, measured: dict[int, str], faster, *args) -> str:
        """A product's path at the current thread count: ``measured`` (the entry's ``forward`` or
        ``gradient``), timed by ``faster(*args)`` on first use."""
        threads = torch.get_num_threads()
        if threads not in measured:
            measured[threads] = faster(*args)
        return measured[threads]

    def row_major(self) -> torch.Tensor:
        """The kept operand row-major, (c, |V|) or (c, d): copied from the kept transpose on first use."""
        if self.rows is None:
            self.rows = self.kept.T.contiguous()
        return self.rows

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The columns of ``x`` (r, d) the kept transpose multiplies: x_V (r, |V|), or x itself."""
        return x if self.varying is None else x.index_select(1, self.varying)

    def add_constant(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """x Xᵀ from ``out`` = x_V X_Vᵀ (r, c), in place: + (x_C a_C) 1ᵀ."""
        if self.varying is None:
            return out
        return out.add_((x.index_select(1, self.const_cols) @ self.const)[:, None])

    def spread(self, g: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        """G X (r, d) from ``part`` = G X_V (r, |V|): the constant columns are (G 1) a_Cᵀ."""
        if self.varying is None:
            return part
        out = part.new_empty(part.shape[0], self.varying.numel() + self.const_cols.numel())
        out.index_copy_(1, self.varying, part)
        return out.index_copy_(1, self.const_cols, torch.outer(g.sum(1), self.const))


def constant_columns(w: torch.Tensor) -> torch.Tensor:
    """(d,) bool: the columns of ``w`` (c, d) equal over its rows (none for a single row, c = 1)."""
    return (w == w[:1]).all(0) if w.shape[0] > 1 else torch.zeros(w.shape[1], dtype=torch.bool, device=w.device)


_FIXED: list[_Fixed] = []


def _fixed_entry(w: torch.Tensor, create: bool = True) -> _Fixed | None:
    """The entry of ``w`` (c, k) whose contiguous transpose (k, c) is kept, or None (not kept: first
    sighting, too large, requiring gradients, or ``create`` False and not kept yet); entries are matched
    by :func:`engine.kernels.base.identity_key`."""
    if w.requires_grad or w.numel() > FIXED_MAX_ELEMENTS or w.dim() != 2:
        return None
    owner, key = identity_key(w)
    for entry in _FIXED:
        if entry.key == key and entry.owner() is owner:
            if entry.kept is None and create:                        # seen once before: copy now
                entry.keep(w.detach())
            return entry if entry.kept is not None else None
    if create:
        _FIXED[:] = [e for e in _FIXED if e.owner() is not None][-(FIXED_ENTRIES - 1):]
        _FIXED.append(_Fixed(owner, key))
    return None


def _onednn_fits(x: torch.Tensor, w: torch.Tensor) -> bool:
    """oneDNN for float32 CPU products x wᵀ of at least :data:`ONEDNN_MIN_MACS` multiply-adds when torch
    has it (below, its per-call cost loses: 10 × 784 by 784 × 10 took 14 µs against MKL's 6)."""
    return (_ONEDNN_LINEAR is not None and x.dtype == torch.float32 and w.dtype == torch.float32
            and x.device.type == "cpu" and x.shape[0] * x.shape[1] * w.shape[0] >= ONEDNN_MIN_MACS)


# The forward x Rᵀ from the kept Rᵀ: MKL's torch.mm(x, Rᵀ) or oneDNN with Rᵀ's transposed view as its
# weight. Which is faster depends on the processor: 10 × 784 by 784 × 2,000, hot, ms, one / two threads:
# AMD EPYC (AVX-512) MKL 0.54–0.69 / 0.42, oneDNN 0.31 / 0.18 (the KIP step at IPC 1 0.76–0.85× and the
# DGKIP step 0.76–0.80× the time with oneDNN, interleaved); Intel Xeon, one thread, MKL 0.47, oneDNN 0.54.
# So each kept operand's first forward times both (:func:`_faster_forward`) and keeps the faster.
FORWARD_PATHS = ("mkl", "onednn")


def _kept_forward(x: torch.Tensor, kept: torch.Tensor, how: str) -> torch.Tensor:
    """x Rᵀ from the kept Rᵀ (k, c) by ``how``, one of :data:`FORWARD_PATHS`."""
    if how == "onednn":
        return _ONEDNN_LINEAR(x, kept.T, None, "none", [], "")
    return torch.mm(x, kept)


# Timed rounds of each path at first use: with 3, the IPC-1 forward on an Intel Xeon took oneDNN (0.35 ms a
# product) over MKL (0.27-0.29) in 1 of 4 profiled runs, at the cost of 0.1-0.2 ms a step for the whole run
PATH_ROUNDS = 7


def _faster_forward(x: torch.Tensor, kept: torch.Tensor, rounds: int = PATH_ROUNDS) -> str:
    """The faster of :data:`FORWARD_PATHS` for x Rᵀ on this machine: the minimum of ``rounds``
    interleaved timings each, at the current thread count (14 products, 4–25 ms for a 2,000 × 784
    pool at IPC 1–10); ``"mkl"`` where oneDNN refuses the call."""
    return _faster(_kept_forward, FORWARD_PATHS, x, kept, rounds)


# The gradient G R of a kept operand R: oneDNN with the kept Rᵀ as its weight, MKL's (Rᵀ Gᵀ)ᵀ from
# the kept Rᵀ (MKL's G (Rᵀ)ᵀ reads the copy across its rows: 0.70 ms against 0.35), or MKL's G R from
# a row-major copy of R (``"rows"``, :meth:`_Fixed.row_major`: a second copy of the operand, dropped
# unless chosen). G by a 2,000 × 631 pool (MNIST's varying columns), hot, ms, Intel Xeon (AMX, 2 MiB
# L2), oneDNN / MKL from Rᵀ / rows: G 10 × 2,000, one thread 0.45 / 0.38 / 0.29, two threads 0.24 /
# 0.21 / 0.18; G 100 × 2,000, one thread 1.68 / 1.77 / 1.56, two threads 0.87 / 1.01 / 0.89. So each
# kept operand's first gradient times all three (:func:`_faster_gradient`).
GRADIENT_PATHS = ("mkl", "onednn", "rows")


def _kept_gradient(g: torch.Tensor, entry: _Fixed, how: str) -> torch.Tensor:
    """G R (r, k), row-major, of ``entry``'s kept operand R (c, k) by ``how``, one of
    :data:`GRADIENT_PATHS` (MKL's (Rᵀ Gᵀ)ᵀ transposed into place: the elementwise passes after it
    mix no layouts)."""
    if how == "onednn":
        return _ONEDNN_LINEAR(g, entry.kept, None, "none", [], "")
    if how == "rows":
        return torch.mm(g, entry.row_major())
    return torch.mm(entry.kept, g.T).T.contiguous()


def _faster_gradient(g: torch.Tensor, entry: _Fixed, rounds: int = PATH_ROUNDS) -> str:
    """The faster of :data:`GRADIENT_PATHS` for G R on this machine, as :func:`_faster_forward`."""
    return _faster(_kept_gradient, GRADIENT_PATHS, g, entry, rounds)


def _faster(product, paths: tuple[str, ...], a: torch.Tensor, operand, rounds: int) -> str:
    """The one of ``paths`` for ``product(a, operand, how)`` with the shortest of ``rounds``
    interleaved timings; ``"mkl"`` where oneDNN refuses the call."""
    try:
        best = fastest_of({how: functools.partial(product, a, operand, how) for how in paths}, rounds)
    except RuntimeError:
        return "mkl"
    return min(best, key=best.get)


def mm_nt(x: torch.Tensor, w: torch.Tensor, fixed: bool = False) -> torch.Tensor:
    """x wᵀ: x (r, k), w (c, k) → (r, c), same dtype; oneDNN where :func:`_onednn_fits`, else torch.mm
    (float64 and other devices). ``fixed``: ``w`` is an operand that recurs unchanged (where oneDNN
    fits, it is then kept transposed, :func:`_fixed_entry`, and the product takes the faster path from
    that copy, measured on its first use at each thread count)."""
    global _ONEDNN_LINEAR
    if _onednn_fits(x, w):
        entry = _fixed_entry(w) if fixed else None
        if entry is not None:
            xv = entry.inputs(x)
            how = entry.path(entry.forward, _faster_forward, xv, entry.kept)
            return entry.add_constant(x, _kept_forward(xv, entry.kept, how))
        try:
            return _ONEDNN_LINEAR(x, w, None, "none", [], "")
        except RuntimeError:           # a build whose oneDNN refuses the call: MKL from now on
            _ONEDNN_LINEAR = None
    return torch.mm(x, w.T)


def mm_nt_thin(k: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """k rᵀ, (m, C), for a block ``k`` (m, n) of a kernel tile (a column slice: rows strided) and
    ``r`` (C, n) with few rows (targets, residuals, a teacher's coefficients): MKL's (r kᵀ)ᵀ, returned
    as that transposed view. m = 100, n = 2,000, C = 10, float32, Intel Xeon, one / two threads:
    51 / 39 µs, against 125 / 93 for :func:`mm_nt`'s oneDNN on the strided slice (which it copies
    first) and 73 / 72 for MKL's k rᵀ; at m = 10 all MKL forms take 7 µs (1 thread), oneDNN 30."""
    return torch.mm(r, k.T).T


def mm_nn(g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """g w: g (r, c), w (c, k) → (r, k); from ``w``'s kept copies (:func:`_fixed_entry`) when it has
    them, by the path measured fastest (:data:`GRADIENT_PATHS`)."""
    entry = _fixed_entry(w, create=False) if _onednn_fits(g, w.T) else None
    if entry is not None:
        how = entry.path(entry.gradient, _faster_gradient, g, entry)
        if "rows" not in entry.gradient.values():            # the row-major copy only while it is used
            entry.rows = None
        try:
            return entry.spread(g, _kept_gradient(g, entry, how))
        except RuntimeError:
            pass
    return mm_nt(g, w.T)


def _root_tiny(dtype: torch.dtype) -> float:
    """√(smallest normal number) of ``dtype``: a product of two such factors stays normal."""
    return math.sqrt(torch.finfo(dtype).tiny)


def _eps(dtype: torch.dtype) -> float:
    """The radicand's clamp, relative to P (as ``kernels.fc._relu_step``)."""
    return 1e-20 if dtype == torch.float64 else 1e-7


class Saved(NamedTuple):
    """What :func:`fused_backward` needs from the forward (:func:`fused_with_self`, :class:`_FusedFC`): ``tensors`` (left, right, the
    variances of each layer on both sides, then per layer q, s, ψ and, for the NTK, Θ z), ``config``
    (depth, W², b², ntk) and ``same`` (both sides are the same memory: k(x, x) in one tile)."""
    tensors: tuple
    config: tuple
    same: bool


def fused_with_self(x: torch.Tensor, real: torch.Tensor, vx: torch.Tensor, depth: int, w2: float, b2: float,
                    ntk: bool) -> tuple[torch.Tensor, torch.Tensor, Saved]:
    """(k(x, B), k(x, x), what :func:`fused_with_self_backward` needs) for synthetic rows ``x`` (m, d)
    with variances ``vx`` (m,) and fixed real rows ``real`` B (n, d), as one m × (n + m) tile (the
    real block kept transposed when it recurs, :func:`mm_nt`): one chain of elementwise calls instead
    of two (θ = 0 on the pairs (i, n + i)). No autograd: the objectives that write their own gradient
    (engine.kip, engine.gap_step) call it."""
    n = real.shape[0]
    with torch.no_grad():
        K, saved = _forward(x, (real, x), vx, torch.cat([first_variances(real, w2, b2), vx]), depth, w2, b2,
                            ntk, n, True)
    return K[:, :n], K[:, n:], saved


def fused_with_self_backward(saved: Saved, g_real: torch.Tensor, g_self: torch.Tensor) -> torch.Tensor:
    """∂/∂x of Σ g_real ∘ k(x, B) + Σ g_self ∘ k(x, x), (m, d), from :func:`fused_with_self`'s tile;
    ``g_real`` (m, n), ``g_self`` (m, m). The tile's gradient is taken on its left side alone, with
    [g_real, g_self + g_selfᵀ]: k being symmetric, the derivative of Σ G_ij k(x_i, x_j) through the
    right argument with G is that through the left one with Gᵀ (the diagonal included)."""
    g_x, _ = fused_backward(saved, torch.cat([g_real, g_self + g_self.T], 1), True, False)
    return g_x


def _forward(left, right, vl, vr, depth, w2, b2, ntk, diag, fixed):
    d = left.shape[1]
    if isinstance(right, tuple):            # column blocks: one tile, one product per block
        q = torch.cat([mm_nt(left, r, fixed=fixed and i == 0) for i, r in enumerate(right)], 1)
    else:
        q = mm_nt(left, right, fixed=fixed)
    q = q.mul_(w2 / d).add_(b2)
    eps, c1 = _eps(q.dtype), w2 / _TWO_PI
    theta = q if ntk else None
    vls, vrs, saved = [vl], [vr], []
    for layer in range(depth):
        radicand = torch.outer(vls[-1], vrs[-1]).addcmul_(q, q, value=-1.0)    # P − q²
        # ε P, at least the dtype's tiny (P = 0 only for a zero input with b_std = 0: s stays > 0)
        floor = torch.outer((vls[-1] * eps).clamp_min_(_root_tiny(q.dtype)), vrs[-1].clamp_min(_root_tiny(q.dtype)))
        if ntk:
            # the factor that turns Θ/s into Θ s/P where the radicand is clamped: ε there, else 1,
            # from a float mask (a bool mask and torch.where cost 4-15 elementwise passes on the CPU)
            select = torch.le(radicand, floor, out=torch.empty_like(q)).mul_(eps - 1.0).add_(1.0)
        s = torch.maximum(radicand, floor, out=radicand).sqrt_()              # √P · sin θ
        if ntk:
            # Θ z: Θ/s; where clamped (s² = ε P) Θ ε/s = Θ s/P; 0 on the diagonal (below). In place
            # on the mask, one division: 100 × 2,100 float32, one thread, √ then Θ/s took 0.10 ms
            # where 1/√ (rsqrt, 0.08 alone), s = r · r^(−1/2) and Θ · r^(−1/2) took 0.17
            tz = select.mul_(theta).div_(s)
        psi = complement_into(s, q, torch.empty_like(q), negate=True)      # θ − π = −φ, saved
        if diag is not None:               # k(x, x): θ = 0 exactly (also where q = 0: atan's q/s is 0/0)
            s.diagonal(diag).zero_()
            psi.diagonal(diag).fill_(-math.pi)
        if ntk:
            if diag is not None:
                tz.diagonal(diag).zero_()
            saved += [q, s, psi, tz]
        else:
            saved += [q, s, psi]
        if ntk and layer + 1 == depth:
            # the last layer's Θ' = c₁ (s + φ (q + Θ)) + b² alone (q' is not needed); Θ₀ is q₀
            q_next = torch.addcmul(s, psi, q, value=-2.0 if theta is q else -1.0)
            if theta is not q:
                q_next.addcmul_(theta, psi, value=-1.0)
            theta = q_next.mul_(c1).add_(b2)
        else:
            q_next = torch.addcmul(s, psi, q, value=-1.0).mul_(c1).add_(b2)
            if ntk:
                theta = torch.addcmul(q_next, theta, psi, value=-c1)
        q = q_next
        if layer + 1 < depth:
            vls.append(vls[-1] * (w2 / 2) + b2)
            vrs.append(vrs[-1] * (w2 / 2) + b2)
    # the same memory on both sides (k(x, x), one tile): the backward adds the two gradients first
    same = (not isinstance(right, tuple) and left.data_ptr() == right.data_ptr()
            and left.shape == right.shape and left.stride() == right.stride())
    return (theta if ntk else q), Saved((left, right, *vls, *vrs, *saved), (depth, w2, b2, ntk), same)


def fused_backward(state: Saved, grad: torch.Tensor, need_l: bool, need_r: bool
                   ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(∂/∂left, ∂/∂right) of Σ grad ∘ k(L, R) for the sides asked for (None for the others; for
    k(x, x) in one tile with both asked for, the whole gradient comes as the right side's)."""
    with torch.no_grad():
        return _backward(state, grad, need_l, need_r)


def _backward(state, grad, need_l, need_r):
    depth, w2, b2, ntk = state.config
    # the caller's gradient of k(a, b) arrives transposed when the node computed k(b, a): one copy
    # costs less than the 5-10× slower elementwise passes over mixed layouts
    grad = grad.contiguous()
    left, right, *rest = state.tensors
    if need_r and isinstance(right, tuple):
        raise ValueError("the gradient of column blocks is taken on the left side only")
    vls, vrs, saved = rest[:depth], rest[depth:2 * depth], rest[2 * depth:]
    c1, per = w2 / _TWO_PI, (4 if ntk else 3)
    # gradients are kept as (array, scale): the true gradient is scale × array (fewer passes)
    gq, sq = (None, 0.0) if ntk else (grad, 1.0)
    gt, st = (grad, 1.0) if ntk else (None, 0.0)
    sum_l = sum_r = None                       # Σ over layers of ∂/∂(first-layer variances)
    for layer in reversed(range(depth)):
        q, s, psi = saved[per * layer:per * layer + 3]                # ψ = θ − π = −φ
        if ntk:
            tz = saved[per * layer + 3]
            if gq is None:
                gbar, sbar = gt, st
            else:
                gbar, sbar = torch.add(gq, gt, alpha=st / sq), sq
            u = gt * tz                                               # scale st
            h = torch.mul(gbar, s).addcmul_(u, q, value=-st / sbar)   # scale sbar
            if layer == 0:
                # g_q₀ + g_Θ₀ (Θ₀ = q₀) = c₁ st (u + (sbar/st) ḡ φ + g_Θ' φ), in place on u
                if gbar is gt:
                    gq = u.addcmul_(gt, psi, value=-(sbar / st + 1.0))
                else:
                    gq = u.addcmul_(gbar, psi, value=-sbar / st).addcmul_(gt, psi, value=-1.0)
                sq = c1 * st
            else:
                gq = u.addcmul_(gbar, psi, value=-sbar / st)          # scale c1 st
                gt, sq, st = gt * psi, c1 * st, -c1 * st
        else:
            h, sbar = gq * s, sq
            gq, sq = gq * psi, -c1 * sq
        # ∂/∂P = c₁ h / 2P; through P = v_l v_r to the first layer's variances (factor (W²/2)^layer)
        factor = c1 * sbar * (w2 / 2) ** layer / 2
        if need_l:
            term = h.sum(1).div_(vls[layer]).mul_(factor)
            sum_l = term if sum_l is None else sum_l.add_(term)
        if need_r:
            term = h.sum(0).div_(vrs[layer]).mul_(factor)
            sum_r = term if sum_r is None else sum_r.add_(term)
        if layer > 0:          # deep nets: fold the scales in so the arrays neither overflow nor underflow
            gq.mul_(sq)
            sq = 1.0
            if ntk:
                gt.mul_(st)
                st = 1.0
    d = left.shape[1]
    g_left = g_right = None
    # q₀ = W²⟨l, r⟩/d + b²; v = W²‖·‖²/d + b²
    if need_l and need_r and state.same:
        # k(x, x): g_x = (G + Gᵀ) x·(W²/d) + (both variance sums) x: one matmul instead of two
        gs = gq + gq.T
        g_right = mm_nt(gs, right.T).mul_(sq * w2 / d).addcmul_((sum_l + sum_r)[:, None], right, value=2 * w2 / d)
        return None, g_right
    if need_l:
        blocks = right if isinstance(right, tuple) else (right,)
        g_left = None
        for g, r in zip(gq.split([r.shape[0] for r in blocks], 1), blocks):
            part = mm_nn(g, r)
            g_left = part if g_left is None else g_left.add_(part)
        g_left = g_left.mul_(sq * w2 / d).addcmul_(sum_l[:, None], left, value=2 * w2 / d)
    if need_r:
        g_right = mm_nt(gq.T, left.T).mul_(sq * w2 / d).addcmul_(sum_r[:, None], right, value=2 * w2 / d)
    return g_left, g_right


class _FusedFC(torch.autograd.Function):
    """k(L, R) as one autograd node (the forward and :func:`fused_backward` behind it)."""

    @staticmethod
    def forward(ctx, left, right, vl, vr, depth, w2, b2, ntk, diag):
        out, state = _forward(left, right, vl, vr, depth, w2, b2, ntk, diag, not right.requires_grad)
        ctx.save_for_backward(*state.tensors)
        ctx.config, ctx.same = state.config, state.same
        return out

    @staticmethod
    def backward(ctx, grad):
        state = Saved(ctx.saved_tensors, ctx.config, ctx.same)
        g_left, g_right = _backward(state, grad, ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return g_left, g_right, None, None, None, None, None, None, None


def first_variances(x: torch.Tensor, w2: float, b2: float, keep: bool = True) -> torch.Tensor:
    """W²‖x_i‖²/d + b², (n,), detached; the squared norms of an input without gradients are cached
    (:func:`engine.kernels.base.row_sq_norms`) unless ``keep`` is False (the synthetic images inside
    a hand-written step: detached there, but new every step, so caching them would only push the
    fixed inputs' norms out)."""
    if x.requires_grad or not keep:
        sq = torch.linalg.vecdot(x.detach(), x.detach())
    else:
        sq = row_sq_norms(x)
    return sq * (w2 / x.shape[1]) + b2


def fc_kernel(a: torch.Tensor, b: torch.Tensor, depth: int, w_std: float, b_std: float, ntk: bool,
              diag_offset: int | None = None) -> torch.Tensor:
    """k(a, b), (n_a, n_b), of the depth-``depth`` FC ReLU network (NTK if ``ntk``, else NNGP); ``a``
    (n_a, d) and ``b`` (n_b, d) flat. ``diag_offset``: as ``Kernel._block`` (the k(x, x) entries lie at
    (i, i + offset); θ is 0 there exactly). Differentiable in whichever input requires gradients."""
    w2, b2 = float(w_std) ** 2, float(b_std) ** 2
    va = first_variances(a, w2, b2)
    vb = va if b is a else first_variances(b, w2, b2)
    if a.shape[0] <= b.shape[0]:
        return _FusedFC.apply(a, b, va, vb, int(depth), w2, b2, bool(ntk), diag_offset)
    diag = None if diag_offset is None else -diag_offset
    return _FusedFC.apply(b, a, vb, va, int(depth), w2, b2, bool(ntk), diag).T
