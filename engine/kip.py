"""KIP's objective (Nguyen et al. 2021): the target-set loss of kernel ridge regression fitted on S.

    L(x̃, Ỹ) = (1 / (2 b)) ‖Y_B − K_BS (K_SS + ρ I)⁻¹ Ỹ‖²_F

over a batch B of b real points, with one of two ridge conventions (``kip_ridge``, issue 17):

* ``"trace"`` (the default; KIP as published — Nguyen et al.'s notebooks and neural-tangents):
  ρ = λ · tr(K_SS) / m, i.e. λ is the published ``reg`` (the peer's ``reg = 1e-6`` is our λ = 1e-6).
  The ridge scales with the kernel's diagonal, so λ is scale-free; the trace is part of the graph
  (gradients flow through it, as in the published JAX code).
* ``"fixed"``: ρ = λ · m, the mean-form λ of the run, so the KRR fitted here is exactly the
  squared-loss model the app evaluates and certifies on S (math doc §4, squared-loss note). Runs
  made before the option existed used this convention (their recipes read back as ``"fixed"``).

Explicit-feature kernels compute φ(x̃) once per step for both K_SS and K_BS, and take the batch's
features φ(x_B) precomputed when the networks are never redrawn (the distiller caches φ of the
whole training set once instead of pushing a real batch through the networks every step).
"""
from __future__ import annotations

import torch

import engine.kernels.fc as fc
from engine.kernels import Kernel
from engine.kernels.fc_fused import mm_nt_thin, first_variances, fused_with_self, fused_with_self_backward


def uses_kip_batches(config) -> bool:
    """Whether a run (a DistillConfig) takes KIP's real batches: KIP mode, or DGKIP's combined
    objective (``kip_weight`` > 0)."""
    return config.mode == "kip" or config.kip_weight > 0


def uses_feature_cache(config, kernel: Kernel) -> bool:
    """Whether a run caches φ(x_train) once for KIP's real batches: it takes them
    (:func:`uses_kip_batches`) with an explicit kernel whose networks are never redrawn (the distiller
    and the run estimate both follow this rule)."""
    return uses_kip_batches(config) and kernel.explicit and not kernel.redraw_every


RIDGES = ("trace", "fixed")


def kip_ridge_value(Kss: torch.Tensor, lam: float, ridge: str):
    """The ridge ρ added to K_SS's diagonal: λ·tr(K_SS)/m ("trace", published KIP) or λ·m ("fixed")."""
    m = Kss.shape[0]
    if ridge == "trace":
        return lam * torch.diagonal(Kss).sum() / m
    if ridge == "fixed":
        return lam * m
    raise ValueError(f"kip_ridge must be one of {', '.join(RIDGES)} (got {ridge!r})")


def kip_loss(kernel: Kernel, xs: torch.Tensor, Ys: torch.Tensor, xb: torch.Tensor | None, Yb: torch.Tensor,
             lam: float, fb: torch.Tensor | None = None, ridge: str = "trace") -> torch.Tensor:
    """xs (m, …), Ys (m, C), xb (b, …), Yb (b, C) → scalar loss, differentiable in xs and Ys.

    ``ridge``: "trace" (ρ = λ·tr(K_SS)/m) or "fixed" (ρ = λ·m); see the module docstring.

    ``fb``: φ(x_B), (b, p), for an explicit kernel (then ``xb`` is not used and may be None).
    """
    m = xs.shape[0]
    if fb is None and xb is not None and _fused_path(kernel, xs, Ys, xb):
        return _FCKIPLoss.apply(xs, Ys, xb, Yb, float(lam), ridge, kernel)
    if kernel.explicit:
        fs = kernel.features(xs)
        if fb is None:
            with torch.no_grad():                     # real images are constants: no graph through them
                fb = kernel.features(xb)
        Kss, Kbs = fs @ fs.T, fb @ fs.T
    else:
        Kss, Kbs = kernel(xs), kernel(xb, xs)
    eye = torch.eye(m, dtype=Kss.dtype, device=Kss.device)
    coef = torch.linalg.solve(Kss + kip_ridge_value(Kss, lam, ridge) * eye, Ys)
    pred = Kbs @ coef
    return 0.5 * ((Yb - pred) ** 2).sum(1).mean()


def _fused_path(kernel: Kernel, xs: torch.Tensor, Ys: torch.Tensor, xb: torch.Tensor) -> bool:
    """Whether :func:`kip_loss` takes :class:`_FCKIPLoss`: a gradient wanted, and an FC network kernel
    whose one tile k(x̃, [x_B, x̃]) fits its tile budget (:func:`engine.kernels.fc.fused_blocks`)."""
    if not (torch.is_grad_enabled() and (xs.requires_grad or Ys.requires_grad)):
        return False
    x = kernel.prepare(xs)
    return fc.fused_blocks(kernel, x, xb.shape[0])


def kip_loss_and_grad(kernel: Kernel, xs: torch.Tensor, Ys: torch.Tensor, xb: torch.Tensor | None,
                      Yb: torch.Tensor, lam: float, fb: torch.Tensor | None = None, ridge: str = "trace"
                      ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(loss, ∂loss/∂xs) without an autograd graph — the run's step for the FC network kernels with
    fixed labels (:func:`fc_kip_grads`): building and walking a one-node graph cost 0.15–0.27 ms of
    a 1.3–6.8 ms step (IPC 1 / 10, one or two threads, MNIST pool). None where :func:`kip_loss`'s
    autograd path is the one that applies (other kernels, explicit features, learnt labels);
    arguments as :func:`kip_loss`, the gradient shaped as ``xs``."""
    if fb is not None or xb is None or Ys.requires_grad or not _fused_path(kernel, xs, Ys, xb):
        return None
    loss, g_x, _ = fc_kip_grads(kernel, xs, Ys, xb, Yb, float(lam), ridge)
    return loss, g_x


def fc_kip_grads(kernel: Kernel, xs: torch.Tensor, Ys: torch.Tensor, xb: torch.Tensor, Yb: torch.Tensor,
                 lam: float, ridge: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(:func:`kip_loss`, its gradient in ``xs`` (xs's shape), its gradient in ``Ys`` (m, C)) for the FC
    network kernels, computed by hand without an autograd graph (engine.kernels.fc_fused's forward and
    backward called directly): [K_SB, K_SS] as one tile (0.92–0.96× the step time of the two blocks
    apart at IPC 1, 0.99–1.02× at IPC 10, interleaved), the solve, the residual, and the tile's gradient
    (engine.kernels.fc_fused.fused_with_self_backward). With L = ‖Y_B − K_BS α‖²/(2b), α = A⁻¹Ỹ,
    A = K_SS + ρ I (A symmetric):

        ∂L/∂K_SB = −α Rᵀ/b,   ∂L/∂α = −K_SB R/b,   β = A⁻¹ ∂L/∂α,   ∂L/∂Ỹ = β,
        ∂L/∂K_SS = −β αᵀ (+ λ/m · tr(−β αᵀ) · I for the trace ridge ρ = λ tr(K_SS)/m)

    with R = Y_B − K_BS α (b, C). The autograd graph of the same loss (kip_loss's other path) is the
    reference in tests/test_kip_ridge.py. Shapes as :func:`kip_loss`; x̃ may be images (m, C, H, W)."""
    depth, w2, b2, ntk = kernel.depth, kernel.w_std ** 2, kernel.b_std ** 2, kernel.ntk
    with torch.no_grad():
        # the real batch as given (a view of it): its norms and transposed copy are kept by its identity
        x, real = kernel.prepare(xs).detach(), kernel.prepare(xb)
        Ys, Yb = Ys.detach(), Yb.detach()
        m, b = x.shape[0], real.shape[0]
        vs = first_variances(x, w2, b2, keep=False)
        Ksb, Kss, saved = fused_with_self(x, real, vs, depth, w2, b2, ntk)      # one tile
        A = Kss.clone()                                  # K_SS + ρ I (a copy: never the tile itself)
        A.diagonal().add_(kip_ridge_value(Kss, lam, ridge))
        lu = torch.linalg.lu_factor(A)
        alpha = torch.linalg.lu_solve(*lu, Ys)                                  # (m, C)
        Rt = torch.addmm(Yb.T, alpha.T, Ksb, alpha=-1.0)                       # (Y_B − K_BS α)ᵀ, (C, b)
        beta = torch.linalg.lu_solve(*lu, mm_nt_thin(Ksb, Rt).mul_(-1.0 / b))  # A⁻¹ ∂L/∂α
        gA = (beta @ alpha.T).neg_()
        if ridge == "trace":
            gA.diagonal().add_(gA.diagonal().sum() * (lam / m))
        g_x = fused_with_self_backward(saved, (alpha @ Rt).mul_(-1.0 / b), gA)
        return torch.linalg.vecdot(Rt, Rt).sum() / (2 * b), g_x.reshape(xs.shape), beta


class _FCKIPLoss(torch.autograd.Function):
    """:func:`fc_kip_grads` as one autograd node (its forward computes the gradients; the backward
    scales them): :func:`kip_loss`'s path for the FC network kernels."""

    @staticmethod
    def forward(ctx, xs, Ys, xb, Yb, lam, ridge, kernel):
        loss, g_x, g_y = fc_kip_grads(kernel, xs, Ys, xb, Yb, lam, ridge)
        ctx.grads = (g_x, g_y)
        return loss

    @staticmethod
    def backward(ctx, grad):
        g_x, g_y = ctx.grads
        return (g_x * grad if ctx.needs_input_grad[0] else None, g_y * grad if ctx.needs_input_grad[1] else None,
                None, None, None, None, None)
