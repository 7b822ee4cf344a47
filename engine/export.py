"""Export a distilled set to a folder, and open such a folder again.

Layout of an export (m images of H×W×C pixels, K classes)::

    images/<class folder>/<index>.png   pixel space; torchvision.datasets.ImageFolder reads it as is
    grid.png                            one row per class, small images upscaled (nearest) to ≥ 64 px
    distilled.npz                       images float32 (m,H,W,C) kernel space, labels int64 (m,),
                                        pixels uint8 (m,H,W,C), classes str (K,),
                                        targets float32 (m,K), alpha float64 (m,K)
    distilled.pt                        the same as torch tensors (torch.load weights_only=True)
    preprocess.npz                      mean, std (and ZCA matrices) — see Preprocessor.save
    curves.csv                          one row per recorded step (union of the curve keys)
    manifest.json                       config, dataset, preprocessing, metrics, versions, timings

An export is written into a temporary folder beside the target and renamed into place, so the
target never holds a partial export; an existing export is only replaced with ``overwrite=True``,
and a non-empty folder that is not an export never is. Loading never runs code from the files.
"""
from __future__ import annotations

import csv
import json
import math
import os
import platform
import re
import shutil
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
from PIL import Image

from engine import __version__
from engine.config import ConfigError, DistillConfig
from engine.data.preprocess import Preprocessor
from engine.data.report import DatasetError
from engine.result import DistillResult

MANIFEST_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = "distilled.npz"
TENSORS = "distilled.pt"
PREPROCESS = "preprocess.npz"
CURVES = "curves.csv"
GRID = "grid.png"
IMAGES = "images"
CURVE_COLUMNS = ("step", "gap", "fenchel_young", "kernel_match", "radius")
GRID_CELL = 64          # minimum cell size of grid.png in pixels
_ARRAY_KEYS = ("images", "labels", "pixels", "classes", "targets", "alpha")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
             *(f"lpt{i}" for i in range(1, 10))}


@dataclass
class DistilledSet:
    """An opened export. Shapes as in :class:`engine.result.DistillResult`: ``images`` float32
    (m, H, W, C) in kernel space, ``pixels`` uint8 (m, H, W, C), ``labels`` int64 (m,),
    ``targets`` float32 (m, K), ``alpha`` float64 (m, K)."""

    images: np.ndarray
    labels: np.ndarray
    pixels: np.ndarray
    classes: list[str]
    targets: np.ndarray
    alpha: np.ndarray
    preprocess: Preprocessor
    manifest: dict[str, Any]
    config: DistillConfig
    path: Path


def class_folders(classes: list[str]) -> list[str]:
    """Safe, unique (also on case-insensitive file systems) folder names for ``classes``."""
    out: list[str] = []
    for i, name in enumerate(classes):
        safe = re.sub(r"[^\w.\- ]", "_", name).strip(" .")[:64] or f"class_{i}"
        if safe.split(".")[0].lower() in _RESERVED:
            safe = "_" + safe
        unique, k = safe, 2
        while unique.lower() in {o.lower() for o in out}:
            unique, k = f"{safe}_{k}", k + 1
        out.append(unique)
    return out


def grid_image(pixels: np.ndarray, labels: np.ndarray, n_classes: int, pad: int = 2) -> np.ndarray:
    """uint8 (m, H, W, C) → one uint8 picture, a row per class on a grey background, each image
    repeated (nearest neighbour) to at least ``GRID_CELL`` pixels."""
    m, h, w, c = pixels.shape
    scale = max(1, math.ceil(GRID_CELL / max(h, w)))
    ch, cw = h * scale, w * scale
    cols = max(1, int(np.bincount(labels, minlength=n_classes).max(initial=0)))
    grid = np.full((pad + n_classes * (ch + pad), pad + cols * (cw + pad), c), 128, np.uint8)
    for row in range(n_classes):
        for col, i in enumerate(np.flatnonzero(labels == row)):
            y, x = pad + row * (ch + pad), pad + col * (cw + pad)
            grid[y:y + ch, x:x + cw] = pixels[i].repeat(scale, 0).repeat(scale, 1)
    return grid


def _png(a: np.ndarray, path: Path) -> None:
    """Save uint8 (H, W, 1 or 3) as PNG."""
    Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(path, format="PNG")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be written to {MANIFEST}")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then replace)."""
    text = json.dumps(data, indent=2, default=_json_default)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_curves(path: Path, curves: list[dict[str, float]]) -> None:
    columns = list(dict.fromkeys([*CURVE_COLUMNS, *(k for row in curves for k in row)]))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(curves)


def _manifest(result: DistillResult, classes: list[str], folders: list[str],
              shape: tuple[int, ...]) -> dict[str, Any]:
    return {
        "schema_version": MANIFEST_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": result.config.to_dict(),
        "dataset": result.dataset,
        "classes": classes,
        "class_folders": dict(zip(classes, folders)),
        "n_images": shape[0],
        "image_shape": list(shape[1:]),
        "preprocessing": result.preprocess.to_dict(),
        "metrics": result.metrics,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "pillow": PIL.__version__, "engine": __version__},
        "device": result.device,
        "seed": result.config.seed,
        "timings": result.timings,
    }


def _write_export(result: DistillResult, folder: Path) -> None:
    """Write every file of the export into ``folder`` (manifest last)."""
    classes = [str(c) for c in result.classes]
    images = np.asarray(result.images, np.float32)
    labels = np.asarray(result.labels, np.int64)
    targets = np.asarray(result.targets, np.float32)
    alpha = np.asarray(result.alpha, np.float64)
    pixels = result.pixels()
    if not (len(images) == len(labels) == len(targets) == len(alpha) == len(pixels)):
        raise ValueError("distilled images, labels, targets and alpha differ in length")
    folders = class_folders(classes)
    width = len(str(max(len(images) - 1, 0)))
    for k, name in enumerate(folders):
        (folder / IMAGES / name).mkdir(parents=True)
        for i in np.flatnonzero(labels == k):
            _png(pixels[i], folder / IMAGES / name / f"{i:0{width}d}.png")
    _png(grid_image(pixels, labels, len(classes)), folder / GRID)
    arrays = dict(images=images, labels=labels, pixels=pixels, targets=targets, alpha=alpha)
    np.savez_compressed(folder / ARRAYS, classes=np.array(classes, dtype=str), **arrays)
    torch.save({**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
                "classes": classes, "config": result.config.to_json()}, folder / TENSORS)
    result.preprocess.save(folder / PREPROCESS)
    _write_curves(folder / CURVES, result.curves)
    _write_json(folder / MANIFEST, _manifest(result, classes, folders, images.shape))


def _check_target(target: Path, overwrite: bool) -> bool:
    """Whether ``target`` holds something that will be replaced; raise if it must not be."""
    if not os.path.lexists(target):
        return False
    if not target.is_dir():
        raise FileExistsError(f"{target} is a file — choose a folder name for the export")
    if not any(target.iterdir()):
        return True
    if not overwrite:
        raise FileExistsError(f"{target} already exists — choose a new folder name, or confirm "
                              "replacing it (overwrite=True)")
    if not (target / MANIFEST).is_file():
        raise FileExistsError(f"{target} is not a distilled-set export (no {MANIFEST}), so it is "
                              "never replaced — choose a new folder name")
    return True


def export_distilled(result: DistillResult, target: str | os.PathLike, *,
                     overwrite: bool = False) -> Path:
    """Write ``result`` to the new folder ``target`` (an empty folder may already exist there) and
    return its path. Raises ``FileExistsError`` when ``target`` exists, unless ``overwrite`` is set
    and it is an earlier export, which is then replaced atomically."""
    target = Path(os.path.abspath(target))
    replace = _check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        _write_export(result, tmp)
        if replace:
            old = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.old"
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _export_folder(path: str | os.PathLike) -> Path:
    folder = Path(os.path.abspath(path))
    folder = folder.parent if folder.is_file() else folder
    if not folder.is_dir():
        raise DatasetError("is not a folder", folder, "choose a folder written by Export")
    return folder


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError("is missing, so this is not a distilled-set export", path,
                           "choose a folder written by Export") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"is damaged ({exc})", path, "re-export the distilled set") from exc
    if not isinstance(manifest, dict):
        raise DatasetError("is damaged (not a JSON object)", path, "re-export the distilled set")
    if manifest.get("schema_version", 0) > MANIFEST_VERSION:
        raise DatasetError(f"was written by a newer version (schema {manifest['schema_version']})",
                           path, "update DGKIP Studio")
    return manifest


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in _ARRAY_KEYS}
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"is missing or damaged ({exc})", path,
                           "re-export the distilled set") from exc
    m = len(arrays["images"])
    if arrays["images"].ndim != 4 or any(len(arrays[k]) != m for k in
                                         ("labels", "pixels", "targets", "alpha")):
        raise DatasetError("holds arrays of inconsistent lengths", path,
                           "re-export the distilled set")
    return arrays


def read_manifest(path: str | os.PathLike) -> tuple[Path, dict[str, Any], DistillConfig]:
    """The export folder, its ``manifest.json`` and run configuration, without loading any array
    (cheap: for listing or showing an export). Errors as in :func:`load_distilled`."""
    folder = _export_folder(path)
    manifest = _read_manifest(folder)
    try:
        config = DistillConfig.from_dict(manifest["config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise DatasetError(f"has no valid run configuration ({exc})", folder / MANIFEST,
                           "re-export the distilled set") from exc
    return folder, manifest, config


def load_distilled(path: str | os.PathLike) -> DistilledSet:
    """Open an export folder (or any file in it). Reads JSON, ``.npz`` without pickle and the
    preprocessing; a missing or damaged file is a :class:`DatasetError` naming it."""
    folder, manifest, config = read_manifest(path)
    a = _read_arrays(folder / ARRAYS)
    return DistilledSet(images=a["images"].astype(np.float32), labels=a["labels"].astype(np.int64),
                        pixels=a["pixels"].astype(np.uint8), classes=[str(c) for c in a["classes"]],
                        targets=a["targets"].astype(np.float32), alpha=a["alpha"].astype(np.float64),
                        preprocess=Preprocessor.load(folder / PREPROCESS), manifest=manifest,
                        config=config, path=folder)


def update_manifest(path: str | os.PathLike, key: str, value: Any) -> None:
    """Set ``manifest[key] = value`` (JSON-serialisable) in an export, rewriting it atomically."""
    folder = _export_folder(path)
    manifest = _read_manifest(folder)
    manifest[key] = value
    _write_json(folder / MANIFEST, manifest)
