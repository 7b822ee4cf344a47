"""KIP's objective (Nguyen et al. 2021): the target-set loss of kernel ridge regression fitted on S.

    L(x̃, Ỹ) = (1 / (2 b)) ‖Y_B − K_BS (K_SS + λ m I)⁻¹ Ỹ‖²_F

over a batch B of b real points. The ridge λ·m is the mean-form λ of the run, so the KRR fitted here
is exactly the squared-loss model the app evaluates on S (math doc §4, squared-loss note).
"""
from __future__ import annotations

import torch

from engine.kernels import Kernel


def kip_loss(kernel: Kernel, xs: torch.Tensor, Ys: torch.Tensor, xb: torch.Tensor, Yb: torch.Tensor,
             lam: float) -> torch.Tensor:
    """xs (m, …), Ys (m, C), xb (b, …), Yb (b, C) → scalar loss, differentiable in xs and Ys."""
    m = xs.shape[0]
    Kss = kernel(xs)
    eye = torch.eye(m, dtype=Kss.dtype, device=Kss.device)
    coef = torch.linalg.solve(Kss + lam * m * eye, Ys)
    pred = kernel(xb, xs) @ coef
    return 0.5 * ((Yb - pred) ** 2).sum(1).mean()
