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

from engine.kernels import Kernel


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
