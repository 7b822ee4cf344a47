"""Image memory layout: the data, the exports and the GUI hold images as (N, H, W, C) NumPy arrays
(channels last); the kernels and networks take (N, C, H, W) tensors (channels first). These are the
engine's one pair of conversions between the two."""
from __future__ import annotations

import numpy as np
import torch


def to_nchw(x: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) NumPy images → a contiguous float32 (N, C, H, W) tensor (a copy)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float32).transpose(0, 3, 1, 2)))


def to_nhwc(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) tensor on any device → a contiguous float32 (N, H, W, C) NumPy array on the CPU."""
    return x.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).contiguous().numpy()
