"""Image layout conversions and the one row-tiling loop of the engine.

Images are NHWC float32 NumPy arrays on the data side and NCHW tensors on the compute side. Work over
many rows (test scores, predictions, feature caches) runs in tiles of :data:`ROW_TILE` rows, so its
temporaries stay bounded whatever the number of rows.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

ROW_TILE = 2048      # rows per tile of test scores, predictions, test features and KIP's feature cache


def to_nchw(x: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) float32 NumPy → (N, C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float32).transpose(0, 3, 1, 2)))


def to_nhwc(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) tensor → (N, H, W, C) float32 NumPy on the CPU."""
    return x.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).contiguous().numpy()


def tiled(fn: Callable[[object], torch.Tensor], x, rows: int = ROW_TILE,
          before_each: Callable[[], None] | None = None) -> torch.Tensor:
    """``fn`` applied to row tiles ``x[i:i + rows]`` of ``x`` (a tensor or an array, n rows), the
    results concatenated along rows: (n, …). ``before_each`` runs before every tile (e.g. a run's
    pause/cancel checkpoint)."""
    out = []
    for i in range(0, len(x), rows):
        if before_each is not None:
            before_each()
        out.append(fn(x[i:i + rows]))
    return torch.cat(out)
