"""Kernel base class: tiled, differentiable evaluation of k(a, b) with a memory budget.

Shapes: inputs are ``(n, d)`` flat vectors or ``(n, C, H, W)`` images (torch layout). Flat kernels
flatten any trailing dimensions; image kernels (``layout == "image"``) require 4-D input.
Outputs: ``k(a, b)`` is ``(n_a, n_b)``, ``k.diag(a)`` is ``(n_a,)``, in the dtype/device of ``a``.
"""
from __future__ import annotations

import math
import weakref
from typing import Any

import torch

DEFAULT_TILE_BYTES = 256 * 2**20
MAX_DEPTH = 100     # deepest network kernel accepted (each layer is one pass of the recursion)


class Kernel:
    """Subclasses implement :meth:`_block` (a dense block, autograd-friendly) and :meth:`diag`."""

    name: str = "kernel"
    layout: str = "flat"          # "flat" or "image"
    explicit: bool = False        # True when :meth:`features` exists (random-feature kernels)
    gram_from_features: bool = False   # True when k(a, b) itself is computed as φ(a) φ(b)ᵀ (not in tiles of pairs)
    redraw_every: int = 0         # steps between fresh random networks for KIP (0: the kernel never changes)

    def __init__(self, tile_bytes: int = DEFAULT_TILE_BYTES) -> None:
        self.tile_bytes = int(tile_bytes)

    # -- to implement ----------------------------------------------------------
    def _block(self, a: torch.Tensor, b: torch.Tensor, diag_offset: int | None = None) -> torch.Tensor:
        """Dense block k(a, b). ``diag_offset`` is set when ``b`` is the full input of which ``a`` is the
        row slice starting at that offset (k(x, x) entries lie at (r, r + offset)); kernels whose
        formula is singular on the diagonal use it, others ignore it."""
        raise NotImplementedError

    def diag(self, a: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Resolved, JSON-serialisable parameters (stored in manifests)."""
        return {}

    def bytes_per_pair(self, a: torch.Tensor) -> int:
        """Peak temporary bytes per (i, j) entry while computing a block (for tiling)."""
        return 4 * a.element_size()

    def with_data_defaults(self, x: torch.Tensor) -> "Kernel":
        """Return a kernel whose data-dependent defaults (e.g. RBF bandwidth) are set from ``x``."""
        return self

    def features(self, a: torch.Tensor) -> torch.Tensor:
        """Explicit feature map φ(a), ``(n, p)``, with k(a, b) = φ(a) φ(b)ᵀ (explicit kernels only)."""
        raise TypeError(f"kernel {self.name!r} has no explicit features")

    def feature_cost(self, chw: tuple[int, ...]) -> tuple[float, float]:
        """Forward cost of φ for one input of shape ``chw``: (multiply-add flops, elements touched by
        elementwise ops); explicit kernels only (the run estimate and the step loop's thread policy)."""
        raise TypeError(f"kernel {self.name!r} has no explicit features")

    def redraw(self, seed: int) -> "Kernel":
        """The same kernel with its random networks drawn from ``seed`` (kernels without any: itself)."""
        return self

    # -- costs (the run plan, engine.plan, and the step loop's thread policy ask these) ---------------
    # ``chw`` is one input's shape (C, H, W); byte counts are of the kernel's own allocations.
    def feature_dim(self, chw: tuple[int, ...]) -> int | None:
        """Width p of φ on inputs of shape ``chw`` (bias column included), or ``None`` for kernels without
        explicit features. This default runs φ on one zero row; kernels override it with the closed form. Raises ``ValueError`` where the kernel rejects
        the shape."""
        if not self.explicit:
            return None
        with torch.no_grad():
            return int(self.features(torch.zeros((1,) + tuple(chw), dtype=torch.float64)).shape[1])

    def pair_bytes(self, chw: tuple[int, ...], dtype: torch.dtype, grad: bool) -> int:
        """Bytes per (i, j) entry of a block in ``dtype`` (:meth:`bytes_per_pair`), with autograd
        (``grad``: the saved arrays, kept until backward) or without (the block's temporaries)."""
        with torch.set_grad_enabled(grad):
            return int(self.bytes_per_pair(self.prepare(_meta(1, chw, dtype).requires_grad_(grad))))

    def tile_rows_for(self, rows: int, n_b: int, chw: tuple[int, ...], dtype: torch.dtype, grad: bool) -> int:
        """Rows per tile of k(a, b) for ``rows`` × ``n_b`` pairs in ``dtype`` (:meth:`tile_rows`), without data."""
        with torch.set_grad_enabled(grad):
            return int(self.tile_rows(self.prepare(_meta(rows, chw, dtype).requires_grad_(grad)), n_b))

    def feature_bytes(self, rows: int, chw: tuple[int, ...], dtype: torch.dtype, grad: bool) -> int:
        """Peak bytes of :meth:`features` on ``rows`` inputs in ``dtype``, the (rows, p) output included;
        ``grad``: an autograd graph is kept (backward included). This default (explicit kernels that say
        no more): three times the output — the tile list, its concatenation, a bias-column copy."""
        p = self.feature_dim(chw) or 0
        return 3 * rows * p * _element_size(dtype)

    def diag_bytes(self, rows: int, chw: tuple[int, ...]) -> int:
        """Peak bytes of :meth:`diag` on ``rows`` float64 inputs. Default: eight (rows,) float64 arrays."""
        return 8 * rows * 8

    def pair_cost(self, chw: tuple[int, ...]) -> tuple[float, float] | None:
        """Work per kernel entry k(x_i, x_j) (float64): (multiply-add flops, transcendental-op
        equivalents of elementwise work), or ``None`` when the kernel does not know (the plan then times
        it on a small block)."""
        return None

    def feature_seconds(self, chw: tuple[int, ...], rates: dict[str, float]) -> float:
        """Seconds per input of :meth:`features` at the machine ``rates`` (engine.plan.time.machine_rates:
        ``flops``/``flops32`` flop/s of matrix products, ``simple`` seconds per elementwise product):
        :meth:`feature_cost`'s flops at the matmul rate of the precision φ runs in, its elements at the
        simple rate."""
        flops, elements = self.feature_cost(tuple(chw))
        return flops / rates[self.feature_rate] + elements * rates["simple"]

    @property
    def feature_rate(self) -> str:
        """The ``rates`` key of the matmul rate φ runs at: "flops32" when it runs in float32, else "flops"."""
        return "flops"

    # -- shared ---------------------------------------------------------------
    def prepare(self, a: torch.Tensor) -> torch.Tensor:
        if self.layout == "flat":
            return a.reshape(a.shape[0], -1)
        if a.dim() != 4:
            raise ValueError(f"kernel {self.name!r} needs images shaped (n, C, H, W), got {tuple(a.shape)}")
        return a

    def tile_rows(self, a: torch.Tensor, n_b: int) -> int:
        per_row = max(1, self.bytes_per_pair(a) * max(1, n_b))
        return max(1, min(a.shape[0], self.tile_bytes // per_row))

    def __call__(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        """k(a, b); ``b=None`` (or ``b is a``) means the symmetric k(a, a)."""
        same = b is None or b is a
        a = self.prepare(a)
        b = a if same else self.prepare(b)
        rows = self.tile_rows(a, b.shape[0])
        blocks = [self._block(a[i:i + rows], b, i if same else None) for i in range(0, a.shape[0], rows)]
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=0)

    def symmetric_rows(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of k(x, x), (stop − start, n), with the diagonal entries computed as
        k(x, x) itself computes them (a tiled build of the symmetric matrix equals the whole one)."""
        x = self.prepare(x)
        rows = self.tile_rows(x, x.shape[0])
        blocks = [self._block(x[i:min(stop, i + rows)], x, i) for i in range(start, stop, rows)]
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=0)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def _meta(rows: int, chw: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A shape-only tensor (rows, *chw) on the meta device (no memory) for the tiling arithmetic."""
    return torch.empty((max(1, rows),) + tuple(chw), dtype=dtype, device="meta")


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def identity_key(a: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    """(the tensor that owns ``a``'s memory, ``a``'s key): the key of caches of values derived from a
    fixed tensor (:func:`row_sq_norms`, engine.kernels.fc_fused's kept transposes), which hold a weak
    reference to the owner and match while it lives and ``a``'s offset, shape, strides, version
    counter (bumped by every in-place write), dtype and device are unchanged."""
    owner = a._base if a._base is not None else a
    return owner, (a.storage_offset(), tuple(a.shape), tuple(a.stride()), a._version, a.dtype, a.device)


_SQ_CACHE: list[tuple[Any, tuple, torch.Tensor]] = []
SQ_CACHE_ENTRIES = 8        # fixed inputs whose row norms are kept (KIP's pool, a teacher's tiles, …)


def row_sq_norms(a: torch.Tensor) -> torch.Tensor:
    """Σ_j a_ij², shape (n,), for a 2-D ``a`` (n, d); differentiable when ``a`` requires grad.

    The squared norms of an input that needs no gradient are kept (for the last
    :data:`SQ_CACHE_ENTRIES` such inputs): a distillation step pairs the same fixed real images with
    new synthetic ones every step, and squaring a 2,000 × 784 pool anew cost more than the rest of a
    KIP step's elementwise work. Entries are matched by :func:`identity_key`.
    """
    if a.requires_grad and torch.is_grad_enabled():
        return (a * a).sum(1)
    owner, key = identity_key(a)
    for ref, k, value in _SQ_CACHE:
        if k == key and ref() is owner:
            return value
    value = torch.linalg.vecdot(a.detach(), a.detach())
    _SQ_CACHE[:] = [e for e in _SQ_CACHE if e[0]() is not None][-(SQ_CACHE_ENTRIES - 1):]
    _SQ_CACHE.append((weakref.ref(owner), key, value))
    return value


DEFAULTS_SAMPLE = 1000       # rows data-dependent kernel defaults look at


def default_sample(n: int, max_points: int = DEFAULTS_SAMPLE, seed: int = 0) -> torch.Tensor:
    """Row numbers (≤ max_points,) of the seeded sample of n rows that :func:`median_distance` uses:
    a sharded run gathers exactly these rows to set the same defaults as one process."""
    if n <= max_points:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:max_points]


def median_distance(x: torch.Tensor, max_points: int = DEFAULTS_SAMPLE, seed: int = 0) -> float:
    """Median pairwise Euclidean distance of (a seeded sample of) the rows of ``x`` (flattened)."""
    x = x.reshape(x.shape[0], -1)
    if x.shape[0] > max_points:
        x = x[default_sample(x.shape[0], max_points, seed).to(x.device)]
    d = torch.cdist(x.double(), x.double())
    iu = torch.triu_indices(x.shape[0], x.shape[0], offset=1)
    vals = d[iu[0], iu[1]]
    med = float(vals.median()) if vals.numel() else 1.0
    return med if med > 0 and math.isfinite(med) else 1.0
