"""Exact NNGP / NTK of a ReLU ConvNet without pooling, from per-pixel covariances.

The network is neural-tangents' ``stax.serial(*[Conv(C_out, (k, k), padding='SAME', W_std, b_std),
Relu] * depth, Flatten(), Dense(1, W_std, b_std))`` in the NTK parameterisation (conv weights
N(0, W_std² / (C_in k²)), zero padding), on images ``(n, C, H, W)``. Without pooling a conv layer only
mixes same-position covariances of its input, so for a pair (x, x') it suffices to carry the per-pixel
covariance q(x, x')[h, w] and the variances q(x, x)[h, w], q(x', x')[h, w]. With ``box`` the k × k
window *sum* over a zero-padded neighbourhood divided by k² (neural-tangents divides by the full fan-in
even where the window overlaps the padding, exactly as a finite network with zero padding does):

    q₁ = W_std² · box(Σ_c x_c x'_c / C) + b_std²,          Θ₁ = q₁
    Relu (per pixel): the arc-cosine maps of :func:`engine.kernels.fc._relu_step`
    Conv:            q ↦ W_std² · box(q) + b_std²,          Θ ↦ q_new + W_std² · box(Θ)
    Flatten + Dense: q ↦ W_std² · mean_hw(q) + b_std²,      Θ ↦ q_new + W_std² · mean_hw(Θ)

A pair costs O(H · W · (C + depth · k²)); blocks are tiled by rows of ``a`` under ``tile_bytes``.
Consequence of the fan-in convention: on a 1 × 1 image a 3 × 3 conv acts like a dense layer with
weight variance W_std² / 9, so this kernel does *not* reduce to ``nngp-fc`` there unless
``filter_size == 1`` (then it is the pixel-average of ``nngp-fc`` on the channel vectors, any H × W).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from engine.kernels.base import MAX_DEPTH, Kernel
from engine.kernels.fc import _relu_step


def box_average(q: torch.Tensor, size: int) -> torch.Tensor:
    """``size × size`` zero-padded window sum over the last two axes of ``q`` (…, H, W), divided by size²."""
    if size == 1:
        return q
    lead, (h, w) = q.shape[:-2], q.shape[-2:]
    out = F.avg_pool2d(q.reshape(-1, 1, h, w), size, stride=1, padding=size // 2, count_include_pad=True)
    return out.reshape(*lead, h, w)


def _spatial_mean(q: torch.Tensor) -> torch.Tensor:
    """Flatten + Dense readout: the mean over the last two (spatial) axes."""
    return q.mean(dim=(-2, -1))


class ConvNetworkKernel(Kernel):
    """NNGP (``ntk=False``) or NTK (``ntk=True``) of a depth-``depth`` ReLU ConvNet without pooling.

    ``filter_size`` is the odd side k of the square 'SAME' filters (3 in the ConvNets of the literature).
    """

    layout = "image"

    def __init__(self, depth: int = 3, w_std: float = math.sqrt(2.0), b_std: float = 0.1,
                 filter_size: int = 3, ntk: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        if not 1 <= int(depth) <= MAX_DEPTH:
            raise ValueError(f"depth must be between 1 and {MAX_DEPTH}")
        if int(filter_size) < 1 or int(filter_size) % 2 == 0:
            raise ValueError("filter_size must be a positive odd integer")
        self.depth, self.w_std, self.b_std = int(depth), float(w_std), float(b_std)
        self.filter_size, self.ntk = int(filter_size), bool(ntk)
        self.name = "ntk-conv" if ntk else "nngp-conv"

    def params(self) -> dict[str, Any]:
        return {"depth": self.depth, "w_std": self.w_std, "b_std": self.b_std,
                "filter_size": self.filter_size}

    def bytes_per_pair(self, a: torch.Tensor) -> int:
        # Peak memory measured in (i, j, h, w) arrays: ≈ 13 without autograd; with autograd (the inputs
        # on either side may require grad, so go by the grad mode) ≈ 10 + 16·depth for the NNGP and
        # 15 + 20·depth for the NTK, backward pass included.
        if torch.is_grad_enabled():
            arrays = 16 + 20 * self.depth if self.ntk else 12 + 17 * self.depth
        else:
            arrays = 16
        return a.shape[-2] * a.shape[-1] * a.element_size() * arrays

    def diag_bytes(self, rows, chw):
        """Per-pixel maps of the recursion: 16 (rows, H, W) float64 arrays."""
        return 16 * rows * chw[1] * chw[2] * 8

    def pair_cost(self, chw):
        """The channel inner product at every pixel, then per pixel C units for the first conv and 3
        (NNGP) or 4 (NTK) per layer (fitted on 8×8 and 16×16×3 images, measured 3.3–15.9 units)."""
        c, h, w = chw
        return 2.0 * c * h * w, float(h * w * (c + (4 if self.ntk else 3) * self.depth))

    def _first(self, a: torch.Tensor, b: torch.Tensor):
        """First conv: q₁₂ (n_a, n_b, H, W), q₁₁ (n_a, 1, H, W), q₂₂ (1, n_b, H, W)."""
        c = a.shape[1]
        q12 = self._conv(torch.einsum("ichw,jchw->ijhw", a, b) / c)
        return q12, self._conv((a * a).sum(1) / c)[:, None], self._conv((b * b).sum(1) / c)[None, :]

    def _box(self, q: torch.Tensor) -> torch.Tensor:
        return box_average(q, self.filter_size)

    def _conv(self, q: torch.Tensor) -> torch.Tensor:
        """Covariance map of a conv layer (per pixel, over the last two axes)."""
        return self.w_std ** 2 * self._box(q) + self.b_std ** 2

    def _layers(self, q12, q11, q22, diag_mask=None):
        """ReLU / conv layers and the readout: q₁₂ (…, H, W), with the variances q₁₁, q₂₂ broadcasting
        against it, → the kernel (…)."""
        w2, b2 = self.w_std ** 2, self.b_std ** 2
        ntk = q12 if self.ntk else None
        for _ in range(self.depth - 1):
            q12, ntk = _relu_step(q12, q11, q22, ntk, diag_mask)
            q12, q11, q22 = self._conv(q12), self._conv(q11 / 2), self._conv(q22 / 2)  # ReLU of a variance: q/2
            if ntk is not None:
                ntk = q12 + w2 * self._box(ntk)
        q12, ntk = _relu_step(q12, q11, q22, ntk, diag_mask)
        q12 = w2 * _spatial_mean(q12) + b2                                          # Flatten + Dense
        return q12 if ntk is None else q12 + w2 * _spatial_mean(ntk)

    def _block(self, a, b, diag_offset=None):
        mask = None
        if diag_offset is not None:
            rows = torch.arange(a.shape[0], device=a.device)[:, None] + diag_offset
            mask = (rows == torch.arange(b.shape[0], device=a.device)[None, :])[:, :, None, None]
        return self._layers(*self._first(a, b), diag_mask=mask)

    def diag(self, a):
        a = self.prepare(a)
        q = self._conv((a * a).sum(1) / a.shape[1])
        return self._layers(q, q, q, diag_mask=torch.ones((), dtype=torch.bool, device=a.device))
