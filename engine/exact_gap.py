"""How far a Nyström teacher is from the exact full-data teacher: the full problem's duality gap.

For the teacher w* (any element of the RKHS, here Σ_j c_j φ(z_j)) with scores f* = f*(X) (n, C) on
the training points and the feasible dual α (n, C) its solve returned,

    G_full = P(w*) − D(α) = (1/n) Σ_i FY_i(f*_i, α_i) + λ/2 ‖w* − w(α)‖²,
    ‖w* − w(α)‖² = ‖w*‖² − 2 αᵀf* / (λn) + αᵀ K_XX α / (λn)²,

and λ-strong convexity gives ‖w* − w_exact‖ ≤ √(2 G_full / λ). The quadratic form αᵀK_XXα takes one
pass over the n × n kernel in row tiles, never stored (explicit kernels: ‖Φᵀα‖² over feature tiles).
The kernel-matching part, a difference of large terms, is rounded up (engine.certify.gap_parts_quad).
"""
from __future__ import annotations

import time
from typing import Callable, Generator

import torch

from engine.certify import gap_parts_quad
from engine.events import Progress
from engine.nystrom import FEATURE_ROWS
from engine.teacher import Teacher

Tensor = torch.Tensor


@torch.no_grad()
def exact_teacher_gap(teacher: Teacher, x: Tensor, Y: Tensor, *, checkpoint: Callable[[], None] | None = None,
                      stop_requested: Callable[[], bool] = lambda: False
                      ) -> Generator[Progress, None, float | None]:
    """G_full at ``teacher`` on the training points ``x`` (n, …) with labels ``Y`` (n, C), float64.
    Yields :class:`Progress` ("certify-exact") per row tile; ``checkpoint()`` between tiles (pause,
    cancel); returns ``None`` when ``stop_requested()`` turns true before the pass ends."""
    kernel, loss, lam = teacher.kernel, teacher.loss, teacher.lam
    alpha, f = teacher.solution.alpha, teacher.solution.z
    n = x.shape[0]
    rows = FEATURE_ROWS if kernel.explicit else max(1, min(n, kernel.tile_rows(kernel.prepare(x), n)))
    t0 = time.perf_counter()
    aka = 0.0
    phi_alpha = None
    for i in range(0, n, rows):
        if checkpoint is not None:
            checkpoint()
        if stop_requested():
            return None
        sl = slice(i, min(n, i + rows))
        if kernel.explicit:
            part = kernel.features(x[sl]).T @ alpha[sl]                    # Φ_tᵀ α_t (p, C)
            phi_alpha = part if phi_alpha is None else phi_alpha + part
        else:
            aka += float((alpha[sl] * (kernel(x[sl], x) @ alpha)).sum())
        yield Progress("certify-exact", sl.stop, n, time.perf_counter() - t0)
    if phi_alpha is not None:
        aka = float((phi_alpha * phi_alpha).sum())
    return gap_parts_quad(loss, lam, teacher.w_norm2, f, Y, alpha, aka).gap
