"""The DGKIP step's gap for the FC network kernels and its gradient, computed by hand without an
autograd graph (engine.kernels.fc_fused's forward and backward called directly).

The step minimises G_S(x̃) = mean FY(Ỹ, Z, α̃) + λ/2 ‖w* − w(α̃)‖² (engine.certify.gap_terms) with
Z = K(x̃, X_T) c the teacher's scores (X_T its n_T support rows or Nyström centres, c (n_T, C) its
coefficients) and α̃ the exact m-point dual, held fixed (Danskin). Its derivatives:

    ∂G/∂Z = ∇ℓ(Ỹ, Z) / m        (the α̃ terms of the Fenchel-Young and kernel-matching parts cancel)
    ∂G/∂K_SS = α̃ α̃ᵀ / (2 λ m²)

The step computes [K(x̃, X_T), K_SS] as one tile of m × (n_T + m) entries, Z, ∂G/∂Z, the solve, and
the tile's gradient (engine.kernels.fc_fused.fused_with_self_backward, its left side alone, K_SS's part
as G + Gᵀ), without an autograd graph (0.956× / 0.943× the autograd
path's step at IPC 1 / 10, cross-entropy, one thread, when the two blocks were computed apart; one
tile took 0.92–0.96× the step time of two at IPC 1 and 0.99× at IPC 10, in-process interleaved).
∇ℓ of a
smooth loss is −α(Z), the loss's ``optimal_alpha``: 11 µs where autograd on the (m, C) scores took
172–192 µs (cross-entropy, m = C = 10, one thread; 3–5 % of an IPC-1 step); the hinge's is
autograd's, the subgradient the autograd path takes. The autograd graph of the same gap
(DGKIPObjective.gap) is the reference in tests/test_objectives.py.
"""
from __future__ import annotations

from typing import Callable

import torch

from engine.certify import gap_terms
from engine.kernels import fc
from engine.kernels.fc_fused import mm_nt_thin, first_variances, fused_with_self, fused_with_self_backward

Tensor = torch.Tensor


def fused_gap_applies(kernel, teacher, xs: Tensor, Ys: Tensor, dual_param: Tensor | None) -> bool:
    """Whether a DGKIP step may take :func:`fused_gap`: exact α̃ (no learnt dual parameter), fixed
    labels, a teacher given by rows and coefficients (exact or Nyström, not explicit weights), and
    an FC network kernel whose one tile k(x̃, [X_T, x̃]) fits its tile budget
    (:func:`engine.kernels.fc.fused_blocks`)."""
    if dual_param is not None or Ys.requires_grad or teacher.x is None or teacher.weights is not None:
        return False
    if not (torch.is_grad_enabled() and xs.requires_grad):
        return False
    x = kernel.prepare(xs)
    return fc.fused_blocks(kernel, x, teacher.x.shape[0])


def fused_gap(kernel, teacher, lam: float, xs: Tensor, Ys: Tensor, solve: Callable[[Tensor], Tensor]
              ) -> tuple[Tensor, Tensor, float, float]:
    """(G_S as a 0-d tensor without an autograd graph, ∂G_S/∂x̃ shaped as ``xs``, its Fenchel-Young
    part, its kernel-matching part) for synthetic images ``xs`` (m, …) with labels ``Ys`` (m, C);
    ``teacher`` in the work dtype; ``solve(K_SS)`` returns the exact dual α̃ (m, C) without gradients."""
    depth, w2, b2, ntk = kernel.depth, kernel.w_std ** 2, kernel.b_std ** 2, kernel.ntk
    with torch.no_grad():
        x, rows = kernel.prepare(xs).detach(), kernel.prepare(teacher.x)
        m = x.shape[0]
        vs = first_variances(x, w2, b2, keep=False)
        Kst, Kss, saved = fused_with_self(x, rows, vs, depth, w2, b2, ntk)      # one tile (module doc)
        Z = mm_nt_thin(Kst, teacher.coef_t).contiguous()                       # f*(x̃), (m, C)
        if teacher.loss.smooth:                                                  # ∇ℓ / m = −α(Z) / m
            gZ = teacher.loss.optimal_alpha(Ys, Z).to(Z.dtype).div_(-m)
        else:                                                                    # the hinge: autograd's subgradient
            with torch.enable_grad():
                Zg = Z.detach().requires_grad_(True)
                gZ, = torch.autograd.grad(teacher.loss.value(Ys, Zg).sum() / m, Zg)
        A = solve(Kss)
        fy, km = gap_terms(teacher.loss, lam, teacher.w_norm2, Z, Ys, A, Kss)
        g_x = fused_with_self_backward(saved, gZ @ teacher.coef_t, (A @ A.T).mul_(0.5 / (lam * m * m)))
        return fy + km, g_x.reshape(xs.shape), fy.item(), km.item()
