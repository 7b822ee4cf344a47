"""What every format reader returns (:class:`RawData`) and the array checks they share.

Images are always uint8 (N, H, W, C) with C = 1 (grayscale) or 3 (RGB); labels int64 (N,).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.data.report import DatasetError, Problem, display_path, format_bytes

RESAMPLE = Image.Resampling.BILINEAR
DEFAULT_MAX_BYTES = 4 * 2**30    # decoded dataset size refused above (the default memory budget, 4 GiB)


class ByteBudget:
    """What a dataset may allocate while it is read: each reader asks :meth:`take` for the bytes of
    an array *before* decoding it (sizes come from file headers), so an oversized or lying file is
    refused with the numbers instead of exhausting memory."""

    def __init__(self, limit: int = DEFAULT_MAX_BYTES) -> None:
        self.limit = int(limit)
        self.used = 0

    def take(self, nbytes: int, path: str | Path, what: str = "images") -> None:
        """Reserve ``nbytes``; raise :class:`DatasetError` naming ``path`` when over the limit."""
        if self.used + nbytes > self.limit:
            raise DatasetError(
                f"decoding its {what} takes {format_bytes(nbytes)}"
                + (f" (after {format_bytes(self.used)} already read)" if self.used else "")
                + f", over the memory budget of {format_bytes(self.limit)}; nothing more was loaded",
                path, "raise the memory budget (memory_budget_gb, --memory-budget-gb) or use a smaller part "
                      "of the dataset")
        self.used += int(nbytes)


@dataclass
class RawData:
    """A source as read, before the test split is settled and the report is made.

    ``x_test``/``y_test`` are ``None`` when the source has no test split of its own. With ``rows``
    (:class:`engine.data.rows.NpzRows`) the ``x_*`` arrays hold row codes, not pixels.
    """

    format: str
    name: str
    classes: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    modes: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    rows: "Any" = None      # engine.data.rows.NpzRows: x_* are row codes, pixels are read by row


def natural_key(name: str) -> list:
    """Sort key putting ``part-2`` before ``part-10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def array_modes(n_images: int, channels: int) -> dict[str, int]:
    """The PIL mode count equivalent of ``n_images`` arrays with ``channels`` channels."""
    return {"L" if channels == 1 else "RGB": n_images}


def as_images(x: np.ndarray, path: Path, problems: list[Problem]) -> np.ndarray:
    """Check and normalise an image array read from ``path`` to uint8 (N, H, W, C), C ∈ {1, 3}.

    Accepts (N, H, W), (N, H, W, C) and channel-first (N, C, H, W); uint8, bool, integers in
    0..255 and floats in [0, 1] (scaled by 255) or [0, 255]. Conversions are reported as warnings.
    """
    where = display_path(path)
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim == 4 and x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)
        problems.append(Problem(where, "channel-first images (N, C, H, W) were transposed to "
                                "(N, H, W, C)", "nothing to do; save channels-last to skip this"))
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or 0 in x.shape[1:]:
        raise DatasetError(f"images have shape {x.shape}; expected (N, H, W) grayscale or "
                           "(N, H, W, 3) RGB", path, "re-save the images in one of these shapes")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype == np.bool_:
        return x.astype(np.uint8) * np.uint8(255)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DatasetError(f"images have dtype {x.dtype}; expected uint8 pixels", path,
                           "re-save the images as uint8 in 0..255")
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise DatasetError(f"{bad:,} pixel value{'s are' if bad != 1 else ' is'} not finite (NaN or ±inf)", path,
                           "re-save the images as uint8 in 0..255")
    if lo < 0 or hi > 255:
        raise DatasetError(f"pixel values span {lo:g}..{hi:g}; expected 0..255 (or 0..1 floats)",
                           path, "re-save the images as uint8 in 0..255")
    scale = 255.0 if np.issubdtype(x.dtype, np.floating) and hi <= 1.0 else 1.0
    problems.append(Problem(where, f"{x.dtype} pixels were converted to uint8"
                            + (" (scaled from 0..1)" if scale != 1.0 else ""),
                            "nothing to do; save uint8 pixels to skip this"))
    return np.rint(x.astype(np.float64) * scale).astype(np.uint8)


def as_labels(y: np.ndarray, n_images: int, path: Path) -> np.ndarray:
    """Check labels read from ``path``: integer class indices ≥ 0, one per image → int64 (N,)."""
    if y.ndim != 1 or len(y) != n_images:
        raise DatasetError(f"labels have shape {y.shape} for {n_images} images; expected one "
                           "class index per image", path, "save labels as a 1-D integer array")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise DatasetError("labels must be class indices 0, 1, 2, … (integers ≥ 0)", path,
                           "map class names to indices and save them as integers")
    return y.astype(np.int64)


def index_labels(names: list[str] | None, labels: list[np.ndarray | None], path: Path
                 ) -> tuple[list[str], list[np.ndarray | None]]:
    """Class names and labels as indices into them, for int64 label arrays read from ``path``
    (``None`` entries, a split the source lacks, are passed through).

    With ``names`` the labels must index them (checked) and are returned as they are. Without,
    the distinct label values, sorted, become the classes, named by their value (``"0"``, ``"7"``,
    ``"2000000000"``): memory grows with the number of labels, never with the largest value.
    """
    present = [y for y in labels if y is not None and len(y)]
    if names is not None:
        top = max((int(y.max()) for y in present), default=-1)
        if top >= len(names):
            raise DatasetError(f"label {top} has no class name ({len(names)} names given)", path,
                               "store one class name per label index")
        return names, labels
    values = np.unique(np.concatenate(present)) if present else np.empty(0, np.int64)
    return ([str(v) for v in values.tolist()],
            [None if y is None else np.searchsorted(values, y).astype(np.int64) for y in labels])


def unique_names(names: list[str]) -> list[str]:
    """``names`` with empty names replaced by ``"class <i>"`` and repeats made unique by a suffix
    (``"cat"``, ``"cat (2)"``), deterministically, so that distillation and evaluation of the same
    source agree."""
    taken, seen, out = set(names), set(), []
    for i, name in enumerate(names):
        base = name or f"class {i}"
        new, k = base, 2
        while new in seen or (new != name and new in taken):
            new, k = f"{base} ({k})", k + 1
        seen.add(new)
        out.append(new)
    return out


def concatenate(parts: list[tuple[Path, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate (file, images, labels) parts in order; images must share (H, W, C)."""
    first = parts[0][1].shape[1:]
    for path, x, _ in parts[1:]:
        if x.shape[1:] != first:
            raise DatasetError(f"images are {x.shape[1:]} but {parts[0][0].name} has {first}",
                               path, "all parts of a dataset must have the same image size")
    return (np.concatenate([x for _, x, _ in parts]), np.concatenate([y for _, _, y in parts]))


def fit_image(a: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """uint8 (h, w, c) → uint8 (H, W, channels): grayscale ↔ RGB (ITU-R 601-2 luma), then
    bilinear resize to ``size`` = (H, W)."""
    if a.shape[2] != channels:
        a = (np.repeat(a, 3, axis=2) if channels == 3
             else np.asarray(Image.fromarray(a).convert("L"))[..., None])
    if a.shape[:2] != tuple(size):
        img = Image.fromarray(a[..., 0] if channels == 1 else a)
        a = np.asarray(img.resize((size[1], size[0]), RESAMPLE)).reshape(size[0], size[1], channels)
    return a


def fit_images(x: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """:func:`fit_image` over uint8 (N, h, w, c); returns ``x`` itself when nothing changes."""
    if x.shape[1:] == (size[0], size[1], channels):
        return x
    out = np.empty((len(x), size[0], size[1], channels), np.uint8)
    for i, a in enumerate(x):
        out[i] = fit_image(a, size, channels)
    return out
