"""KIP's objective (Nguyen et al. 2021): the target-set loss of kernel ridge regression fitted on S.

    L(x̃, Ỹ) = (1 / (2 b)) ‖Y_B − K_BS (K_SS + λ m I)⁻¹ Ỹ‖²_F

over a batch B of b real points. The ridge λ·m is the mean-form λ of the run, so the KRR fitted here
is exactly the squared-loss model the app evaluates on S (math doc §4, squared-loss note).

Explicit-feature kernels compute φ(x̃) once per step for both K_SS and K_BS, and take the batch's
features φ(x_B) precomputed when the networks are never redrawn (the distiller caches φ of the
whole training set once instead of pushing a real batch through the networks every step).
"""
from __future__ import annotations

import torch

from engine.kernels import Kernel


def uses_feature_cache(mode: str, kernel: Kernel) -> bool:
    """Whether a run caches φ(x_train) once for KIP's real batches: KIP with an explicit kernel whose
    networks are never redrawn (the distiller and the run estimate both follow this rule)."""
    return mode == "kip" and kernel.explicit and not getattr(kernel, "redraw_every", 0)


def kip_loss(kernel: Kernel, xs: torch.Tensor, Ys: torch.Tensor, xb: torch.Tensor | None, Yb: torch.Tensor,
             lam: float, fb: torch.Tensor | None = None) -> torch.Tensor:
    """xs (m, …), Ys (m, C), xb (b, …), Yb (b, C) → scalar loss, differentiable in xs and Ys.

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
    coef = torch.linalg.solve(Kss + lam * m * eye, Ys)
    pred = Kbs @ coef
    return 0.5 * ((Yb - pred) ** 2).sum(1).mean()
