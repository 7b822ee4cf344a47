"""Preprocessing between pixels and the space the kernel sees, stored with every result.

Pixels p ∈ [0, 1] (uint8 / 255) are standardised per channel, z = (p − mean_c) / std_c, and
optionally ZCA-whitened with the KIP/RFAD convention: flatten z to D = H·W·C features, take the
(uncentred) feature covariance Σ = zᵀz / N = U diag(s) Uᵀ and map z ↦ W z with
W = U diag(1 / sqrt(s + reg·mean(s))) Uᵀ, where ``reg`` (``zca_reg``) is relative to the mean
eigenvalue. The inverse maps back with W⁻¹ = U diag(sqrt(s + reg·mean(s))) Uᵀ and clips to [0, 1].
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.data.report import DatasetError
from engine.text import shown

METHODS = ("standardize", "zca")
_CHUNK = 4096   # images per block while accumulating statistics (bounds float64 temporaries)


def _blocks(x_uint8: np.ndarray):
    """float64 pixel blocks in [0, 1], (n, H, W, C) each."""
    for i in range(0, len(x_uint8), _CHUNK):
        yield x_uint8[i:i + _CHUNK].astype(np.float64) / 255.0


@dataclass
class Preprocessor:
    """A fitted pixel ↔ feature map. ``mean``/``std``: float64 (C,) in pixel units [0, 1];
    ``zca``/``zca_inverse``: float64 (D, D), D = H·W·C, or ``None`` for plain standardisation;
    ``shape``: the (H, W, C) it was fitted on."""

    method: str
    mean: np.ndarray
    std: np.ndarray
    zca: np.ndarray | None = None
    zca_inverse: np.ndarray | None = None
    zca_reg: float | None = None
    shape: tuple[int, int, int] | None = None

    @classmethod
    def fit(cls, x_uint8: np.ndarray, method: str = "standardize",
            zca_reg: float = 0.1, reduce: Callable[[np.ndarray], np.ndarray] | None = None) -> "Preprocessor":
        """Fit on uint8 (N, H, W, C) training pixels. ``zca_reg`` (> 0) only matters for "zca".
        ``reduce``: for a sharded run, sums float64 statistics over the ranks (each passes its rows)."""
        if method not in METHODS:
            raise ValueError(f"preprocessing {method!r} is not one of {', '.join(METHODS)}")
        if x_uint8.dtype != np.uint8 or x_uint8.ndim != 4 or (len(x_uint8) == 0 and reduce is None):
            raise ValueError(f"expected uint8 images (N, H, W, C), got {x_uint8.dtype} "
                             f"{x_uint8.shape}")
        reduce = reduce or (lambda a: a)
        channels, shape = x_uint8.shape[-1], tuple(x_uint8.shape[1:])
        total, squares = np.zeros(channels), np.zeros(channels)
        for b in _blocks(x_uint8):
            flat = b.reshape(-1, channels)
            total += flat.sum(0)
            squares += (flat * flat).sum(0)
        stats = reduce(np.concatenate([total, squares, [float(len(x_uint8))]]))
        total, squares, n = stats[:channels], stats[channels:2 * channels], int(stats[-1])
        count = n * shape[0] * shape[1]
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        std = np.where(std > 1e-8, std, 1.0)     # a constant channel is only centred
        pre = cls("standardize", mean, std, shape=shape)
        if method == "zca":
            pre = pre._fit_zca(x_uint8, zca_reg, n, reduce)
        return pre

    def _fit_zca(self, x_uint8: np.ndarray, zca_reg: float, n: int,
                 reduce: Callable[[np.ndarray], np.ndarray]) -> "Preprocessor":
        if not zca_reg > 0:
            raise ValueError(f"zca_reg must be positive (got {zca_reg})")
        d = int(np.prod(self.shape))
        cov = np.zeros((d, d))
        for b in _blocks(x_uint8):
            z = ((b - self.mean) / self.std).reshape(len(b), d)
            cov += z.T @ z
        s, u = np.linalg.eigh(reduce(cov) / n)
        s = np.maximum(s, 0.0)
        floor = zca_reg * s.mean()
        if not floor > 0:
            raise ValueError("cannot whiten: the images are constant; use 'standardize'")
        zca = (u / np.sqrt(s + floor)) @ u.T
        zca_inverse = (u * np.sqrt(s + floor)) @ u.T
        return Preprocessor("zca", self.mean, self.std, zca, zca_inverse, float(zca_reg), self.shape)

    def _check(self, x: np.ndarray) -> None:
        if x.ndim != 4 or x.shape[-1] != len(self.mean) or (
                self.zca is not None and x.shape[1:] != self.shape):
            raise ValueError(f"images {x.shape} do not match the preprocessing, fitted on "
                             f"(N, {', '.join(map(str, self.shape or ('H', 'W', len(self.mean))))})")

    def transform(self, x_uint8: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) pixels → float32 (N, H, W, C) features."""
        self._check(x_uint8)
        z = (x_uint8.astype(np.float32) / 255 - self.mean.astype(np.float32)) \
            / self.std.astype(np.float32)
        if self.zca is not None:
            z = (z.reshape(len(z), -1) @ self.zca.astype(np.float32)).reshape(z.shape)
        return z

    def inverse(self, z: np.ndarray, clip: bool = True) -> np.ndarray:
        """float (N, H, W, C) features → float32 pixels in [0, 1] units, (N, H, W, C), clipped to [0, 1]
        unless ``clip`` is False (distilled images stray outside it)."""
        z = np.asarray(z, np.float64)
        self._check(z)
        if self.zca_inverse is not None:
            z = (z.reshape(len(z), -1) @ self.zca_inverse).reshape(z.shape)
        pixels = z * self.std + self.mean
        return (np.clip(pixels, 0.0, 1.0) if clip else pixels).astype(np.float32)

    def from_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """float (N, H, W, C) pixels in [0, 1] units (values outside it allowed) → float32 features:
        :meth:`transform` for unquantised pixels, the inverse of ``inverse(·, clip=False)``."""
        self._check(pixels)
        z = (np.asarray(pixels, np.float64) - self.mean) / self.std
        if self.zca is not None:
            z = (z.reshape(len(z), -1) @ self.zca).reshape(z.shape)
        return z.astype(np.float32)

    def same_map(self, other: "Preprocessor") -> bool:
        """Whether ``other`` maps pixels to the same features (same method and statistics, to float32)."""
        def close(a: np.ndarray | None, b: np.ndarray | None) -> bool:
            return (a is None) == (b is None) and (a is None or (a.shape == b.shape and np.allclose(a, b, rtol=1e-6,
                                                                                               atol=1e-9)))
        return self.method == other.method and close(self.mean, other.mean) and close(self.std, other.std) \
            and close(self.zca, other.zca)

    def to_uint8(self, z: np.ndarray) -> np.ndarray:
        """float (N, H, W, C) features → uint8 (N, H, W, C) pixels."""
        return np.rint(self.inverse(z) * 255).astype(np.uint8)

    def to_dict(self) -> dict[str, Any]:
        """JSON summary for the manifest (the matrices themselves go to ``preprocess.npz``)."""
        return {"method": self.method, "mean": self.mean.tolist(), "std": self.std.tolist(),
                "zca_reg": self.zca_reg, "shape": list(self.shape) if self.shape else None}

    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` (plain arrays, no pickle) to exactly ``path``."""
        arrays = {"method": np.array(self.method), "mean": self.mean, "std": self.std}
        if self.shape is not None:
            arrays["shape"] = np.array(self.shape)
        if self.zca is not None:
            arrays.update(zca=self.zca, zca_inverse=self.zca_inverse, zca_reg=np.array(self.zca_reg))
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Preprocessor":
        """Read what :meth:`save` wrote (array sizes checked from their headers first); a missing,
        damaged or inconsistent file is a :class:`DatasetError`."""
        from engine.data.formats import ByteBudget
        from engine.data.npz import member_names, read_members

        fix = "re-export the distilled set"
        names = member_names(Path(path), fix)
        keys = ["method", "mean", "std"] + [k for k in ("shape", "zca", "zca_inverse", "zca_reg") if k in names]
        a = read_members(Path(path), keys, ByteBudget(), fix)
        problem = _problem(a)
        if problem:
            raise DatasetError(f"does not describe a valid preprocessing ({problem})", path, fix)
        zca = (a["zca"].astype(np.float64), a["zca_inverse"].astype(np.float64), float(a["zca_reg"])) \
            if "zca" in a else (None, None, None)
        shape = tuple(int(s) for s in a["shape"]) if "shape" in a else None
        return cls(str(a["method"]), a["mean"].astype(np.float64), a["std"].astype(np.float64), *zca, shape=shape)


def _problem(a: dict[str, np.ndarray]) -> str:
    """What is wrong with the arrays of a saved preprocessing ("" when nothing)."""
    method = str(a["method"]) if a["method"].dtype.kind in "US" and a["method"].ndim == 0 else ""
    if method not in METHODS:
        return f"method {method!r}"
    mean, std = a["mean"], a["std"]
    if mean.ndim != 1 or mean.shape != std.shape or mean.shape[0] < 1 or mean.dtype.kind != "f" \
            or std.dtype.kind != "f" or not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        return f"mean {mean.shape} / std {std.shape} are not finite per-channel values with std > 0"
    if "shape" in a and (a["shape"].shape != (3,) or a["shape"].dtype.kind not in "iu" or (a["shape"] < 1).any()
                         or int(a["shape"][-1]) != mean.shape[0]):
        return f"image shape {shown(a['shape'].tolist())}"
    if (method == "zca") != ("zca" in a and "zca_inverse" in a and "zca_reg" in a):
        return "ZCA matrices missing or unexpected"
    if method == "zca":
        if "shape" not in a:
            return "ZCA without an image shape"
        d = int(np.prod(a["shape"].astype(np.int64)))
        for key in ("zca", "zca_inverse"):
            if a[key].shape != (d, d) or a[key].dtype.kind != "f" or not np.isfinite(a[key]).all():
                return f"{key} {a[key].shape}, expected finite ({d}, {d})"
        if a["zca_reg"].shape != () or a["zca_reg"].dtype.kind != "f" or not float(a["zca_reg"]) > 0:
            return "zca_reg"
    return ""
