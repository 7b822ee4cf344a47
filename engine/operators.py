"""Kernel matrices as linear operators with bounded memory.

``KernelOperator`` exposes ``matvec(V) = K V`` for V (n, C). Two storage strategies:

- dense: K (n × n) materialised once, tile by tile, when n² · bytes fits the memory budget;
- features: K = Φ Φᵀ with explicit features Φ (n × p) (linear and random-feature kernels),
  O(n·p) memory and time per product.

The operators hold no autograd graph (teachers and certificates are computed without gradients).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Generator

import torch

from engine.events import Progress
from engine.generators import drain
from engine.kernels import Kernel


class ResourceError(RuntimeError):
    """A run cannot fit the memory budget; the message gives the estimate and the alternatives."""


@dataclass
class KernelOperator:
    n: int
    dense: torch.Tensor | None = None       # (n, n); used for products when present
    features: torch.Tensor | None = None    # (n, p); explicit kernels (with ``dense`` too when p ≥ n)

    def matvec(self, V: torch.Tensor) -> torch.Tensor:
        if self.dense is not None:
            return self.dense @ V
        return self.features @ (self.features.T @ V)

    @property
    def nbytes(self) -> int:
        t = self.dense if self.dense is not None else self.features
        return t.numel() * t.element_size()


def max_dense_points(element_size: int, budget_bytes: int) -> int:
    """The largest n whose dense n × n matrix of ``element_size``-byte entries fits ``budget_bytes``."""
    return math.isqrt(max(0, int(budget_bytes)) // max(1, int(element_size)))


def operator_plan(n: int, *, explicit: bool, p: int | None, element_size: int, budget_bytes: int,
                  dense_if_fits: bool = False) -> tuple[str, int]:
    """How :func:`build_operator` stores the kernel of n points, and its bytes.

    ``("features", n·p·element_size)`` when explicit features (dimension ``p``) are used and p < n
    (unless ``dense_if_fits`` and ΦΦᵀ fits half of ``budget_bytes`` beside Φ, leaving the other half to
    the rest of the run: the hinge teacher's coordinate descent needs kernel rows), else ``("dense", n²·element_size)``; raises :class:`ResourceError` when that dense matrix is over
    ``budget_bytes``. Part of the run's refusal rule (:func:`engine.plan.check_run`, called by
    :func:`engine.distill.run` before any kernel is built), which also holds the peak over every stage
    to the budget and to the machine's available memory; kept here as the operator's own guard."""
    if explicit and p is not None and p < n:
        if not (dense_if_fits and 2 * (n * n + n * p) * element_size <= budget_bytes):
            return "features", n * p * element_size
    need = n * n * element_size
    if need > budget_bytes:
        raise ResourceError(
            f"the teacher's {n:,} × {n:,} kernel matrix needs {need / 2**30:.1f} GiB, over the "
            f"memory budget of {budget_bytes / 2**30:.1f} GiB. Use fewer images per class "
            f"(max_per_class), an explicit-feature kernel (linear, rf-fc, rf-conv), or raise the budget.")
    return "dense", need


PROGRESS_TILES = 50      # the kernel build reports progress (and checks for Cancel) at least this often,
MIN_TILE_ROWS = 64       # in tiles of at least this many rows (thinner products run far below BLAS speed)


def build_tile_rows(n: int, kernel_rows: int) -> int:
    """Rows per tile of the teacher's build of n rows (:func:`build_operator_iter`; the memory model
    counts these tiles): n / :data:`PROGRESS_TILES`, at least :data:`MIN_TILE_ROWS`, at most the
    kernel's own tile of ``kernel_rows`` rows."""
    return max(1, min(max(-(-n // PROGRESS_TILES), MIN_TILE_ROWS), kernel_rows))


@torch.no_grad()
def build_operator_iter(kernel: Kernel, x: torch.Tensor, budget_bytes: int, prefer_features: bool = True,
                        dense_if_fits: bool = False, checkpoint: Callable[[], None] | None = None
                        ) -> Generator[Progress, None, KernelOperator]:
    """Kernel operator of the rows of ``x`` (n, …) in x's dtype/device, refusing when over budget
    (the rule is :func:`operator_plan`). A generator: the features Φ (n, p) or the dense K (n, n) are
    computed in row tiles (:data:`PROGRESS_TILES` of them, or of :data:`MIN_TILE_ROWS` rows when
    that is more, within the kernel's own tile size), with ``checkpoint()`` before each and a :class:`Progress` ("teacher-features" or
    "teacher-kernel", rows done, n) after it; returns the :class:`KernelOperator` (``op = yield from build_operator_iter(...)``)."""
    n = x.shape[0]
    t0 = time.perf_counter()
    explicit = kernel.explicit and prefer_features
    rows = build_tile_rows(n, kernel.tile_rows(kernel.prepare(x), n))

    def tiles(stage: str, block: Callable[[slice], torch.Tensor], out: torch.Tensor | None
              ) -> Generator[Progress, None, list]:
        parts = []
        for i in range(0, n, rows):
            if checkpoint is not None:
                checkpoint()
            sl = slice(i, min(n, i + rows))
            if out is None:
                parts.append(block(sl))
            else:
                out[sl] = block(sl)
            yield Progress(stage, sl.stop, n, time.perf_counter() - t0)
        return parts

    phi = None
    if kernel.explicit:          # rows of Φ; K = ΦΦᵀ when dense (random-feature kernels have no other form)
        phi = torch.cat((yield from tiles("teacher-features", lambda sl: kernel.features(x[sl]), None)))
    storage, _ = operator_plan(n, explicit=explicit, p=None if phi is None else phi.shape[1],
                               element_size=x.element_size(), budget_bytes=budget_bytes,
                               dense_if_fits=dense_if_fits)
    if storage == "features":
        return KernelOperator(n=n, features=phi)
    if phi is not None:          # K = ΦΦᵀ from the features already computed (kept for w* = Φᵀc)
        return KernelOperator(n=n, dense=phi @ phi.T, features=phi if explicit else None)
    dense = torch.empty((n, n), dtype=x.dtype, device=x.device)
    yield from tiles("teacher-kernel", lambda sl: kernel.symmetric_rows(x, sl.start, sl.stop), dense)
    return KernelOperator(n=n, dense=dense)


def build_operator(kernel: Kernel, x: torch.Tensor, budget_bytes: int, prefer_features: bool = True,
                   dense_if_fits: bool = False) -> KernelOperator:
    """:func:`build_operator_iter` run to completion (no progress, no cancel)."""
    return drain(build_operator_iter(kernel, x, budget_bytes, prefer_features, dense_if_fits))
