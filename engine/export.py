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
and a non-empty folder that is not an export never is. Exports to one target are serialised by a
lock, folders left by a killed export are tidied by the next one (:mod:`engine.output`), and
:func:`save_result` puts a result whose target fails at the last moment into a recovery folder.
Loading never runs code from the files and checks every array and field before it is used.
"""
from __future__ import annotations

import csv
import errno
import json
import math
import os
import platform
import re
import shutil
import unicodedata
import uuid
from dataclasses import dataclass, field
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
from engine.output import (ARRAYS, MANIFEST, ExportError, TargetLock, check_target_location, is_export,
                           make_temp_dir, old_name, recovery_candidates, target_state, tidy_leftovers)
from engine.result import DistillResult
from engine.text import printable, shown

MANIFEST_VERSION = 1
TENSORS = "distilled.pt"
PREPROCESS = "preprocess.npz"
CURVES = "curves.csv"
GRID = "grid.png"
IMAGES = "images"
CURVE_COLUMNS = ("step", "gap", "fenchel_young", "kernel_match", "radius")
GRID_CELL = 64          # minimum cell size of grid.png in pixels
_ARRAY_KEYS = ("images", "labels", "pixels", "classes", "targets", "alpha")
FOLDER_BYTES = 255     # longest class folder name, bytes of UTF-8 (every common file system's limit)
MAX_MANIFEST_BYTES = 64 * 2**20
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


def _cut_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding has at most ``limit`` bytes."""
    raw = text.encode("utf-8")
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


def _folder_key(name: str) -> str:
    """Names equal on case-insensitive or normalising (macOS) file systems share a key."""
    return unicodedata.normalize("NFD", name).casefold()


def class_folders(classes: list[str]) -> list[str]:
    """Safe folder names for ``classes``: word characters, ``.``, ``-`` and spaces kept (others
    become ``_``), at most 255 bytes of UTF-8, never a reserved device name, and unique also on
    case-insensitive and normalising file systems."""
    out: list[str] = []
    taken: set[str] = set()
    for i, name in enumerate(classes):
        safe = re.sub(r"[^\w.\- ]", "_", unicodedata.normalize("NFC", name)).strip(" .") or f"class_{i}"
        if safe.split(".")[0].lower() in _RESERVED:
            safe = "_" + safe
        unique, k = _cut_utf8(safe, FOLDER_BYTES), 2
        while _folder_key(unique) in taken:
            suffix = f"_{k}"
            unique, k = _cut_utf8(safe, FOLDER_BYTES - len(suffix)) + suffix, k + 1
        taken.add(_folder_key(unique))
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
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then replace); the
    file's mode is 0666 less the umask, as for any file the user creates."""
    text = json.dumps(data, indent=2, default=_json_default)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
        # "stopped": the run ended early on request, after metrics.steps of config.steps
        "outcome": result.outcome,
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


def export_distilled(result: DistillResult, target: str | os.PathLike, *,
                     overwrite: bool = False, notes: list[str] | None = None) -> Path:
    """Write ``result`` to the new folder ``target`` (an empty folder may already exist there) and
    return its path. Raises ``FileExistsError`` when ``target`` exists, unless ``overwrite`` is set
    and it is an earlier export, which is then replaced atomically; :class:`ExportError` when another
    export to ``target`` is running or the location cannot be written. Leftovers of interrupted
    exports to ``target`` are tidied first (what was done is appended to ``notes``)."""
    target = Path(os.path.abspath(target))
    check_target_location(target, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    with TargetLock(target):
        tidied = tidy_leftovers(target)
        if notes is not None:
            notes.extend(tidied)
        replace = target_state(target, overwrite)       # again, under the lock: another export may have won
        tmp = make_temp_dir(target)
        try:
            _write_export(result, tmp)
            if replace:
                old = old_name(target)
                os.rename(target, old)
                try:
                    os.rename(tmp, target)
                except BaseException:
                    os.rename(old, target)
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                _rename_new(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _rename_new(tmp: Path, target: Path) -> None:
    """Move the finished ``tmp`` to ``target``, which must still be missing or empty; a target that
    something else filled meanwhile (``ENOTEMPTY``/``EEXIST``) is a clear ``FileExistsError``."""
    try:
        os.rename(tmp, target)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        raise FileExistsError(errno.EEXIST, f"{printable(target)} was created by something else while this export "
                              "was written — choose a new folder name", str(target)) from exc


@dataclass
class ExportOutcome:
    """Where :func:`save_result` put the result: ``path``; ``recovered`` when that is not the target
    (``error`` says why the target failed); ``notes``: leftovers tidied, recovery attempts."""

    path: Path
    target: Path
    recovered: bool = False
    error: str = ""
    notes: list[str] = field(default_factory=list)

    def message(self) -> str:
        """One paragraph for the user."""
        if not self.recovered:
            return f"exported to {printable(self.path)}"
        return (f"could not export to {printable(self.target)} ({self.error}); the result was saved to "
                f"{printable(self.path)} instead — move or copy it where you want it")


def save_result(result: DistillResult, target: str | os.PathLike, *, overwrite: bool = False
                ) -> ExportOutcome:
    """Export ``result`` to ``target``; when that fails (full disk, permissions changed, another
    export won the target, …) write it to the first recovery folder that works (beside the target,
    else the app data folder, see :func:`engine.output.recovery_candidates`). Raises
    :class:`ExportError` only when the result could be saved nowhere; a ``KeyboardInterrupt`` is
    never caught."""
    target = Path(os.path.abspath(target))
    notes: list[str] = []
    try:
        return ExportOutcome(export_distilled(result, target, overwrite=overwrite, notes=notes), target,
                             notes=notes)
    except (OSError, ValueError) as exc:
        error = printable(exc)
    tried = []
    for candidate in recovery_candidates(target):
        try:
            path = export_distilled(result, candidate, notes=notes)
        except (OSError, ValueError) as exc:
            tried.append(f"{printable(candidate)}: {printable(exc)}")
            continue
        return ExportOutcome(path, target, True, error, notes + [f"not saved to {t}" for t in tried])
    raise ExportError(target, f"the result could not be saved ({error}; also tried {'; '.join(tried)})",
                      "free some disk space or fix the folder's permissions, then run again")


def estimate_export_bytes(n_images: int, image_shape: tuple[int, int, int], n_classes: int,
                          curve_rows: int = 0, zca: bool = False) -> int:
    """An upper estimate of an export's size in bytes for ``n_images`` synthetic images of
    ``image_shape`` (H, W, C) pixels: float32 images twice (npz + pt), uint8 pixels three times (npz,
    pt, PNGs with headers), the grid, targets and alpha, curves.csv (≈ 300 bytes a row) and the
    preprocessing (two float64 D×D ZCA matrices when ``zca``, D = H·W·C)."""
    h, w, c = image_shape
    d = h * w * c
    cell = max(1, math.ceil(GRID_CELL / max(h, w, 1)))
    per_image = 2 * 4 * d + 3 * d + 1024 + 2 * (4 + 8) * n_classes
    cols = math.ceil(n_images / max(1, n_classes))
    grid = (n_classes * (h * cell + 2) + 2) * (cols * (w * cell + 2) + 2) * c
    preprocess = 2 * 8 * d * d if zca else 64 * c
    return int(n_images * per_image + grid + preprocess + 300 * curve_rows + 64 * 1024)


def _export_folder(path: str | os.PathLike) -> Path:
    """The export folder ``path`` names: itself, or the folder of an export's own file (its manifest,
    ``distilled.npz``…). Any other file is refused by its own name."""
    given = Path(os.path.abspath(path))
    if given.is_file():
        if not is_export(given.parent):
            raise DatasetError("is a file, not a distilled-set export", given, "choose a folder written by Export")
        return given.parent
    if not given.is_dir():
        raise DatasetError("is not a folder", given, "choose a folder written by Export")
    return given


_MANIFEST_TYPES = {"classes": list, "class_folders": dict, "metrics": dict, "dataset": dict,
                   "transfer": dict, "timings": dict, "versions": dict, "preprocessing": dict,
                   "image_shape": list}


def _read_manifest(folder: Path) -> dict[str, Any]:
    """``manifest.json`` as a dict whose known fields have their types (checked, never trusted)."""
    path = folder / MANIFEST
    damaged = "re-export the distilled set"
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise DatasetError(f"is {path.stat().st_size:,} bytes, far larger than a manifest", path, damaged)
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError("is missing, so this is not a distilled-set export", path,
                           "choose a folder written by Export") from exc
    except RecursionError as exc:
        raise DatasetError("is damaged (nested too deeply)", path, damaged) from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"is damaged ({printable(exc)})", path, damaged) from exc
    if not isinstance(manifest, dict):
        raise DatasetError("is damaged (not a JSON object)", path, damaged)
    version = manifest.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise DatasetError(f"has schema_version {shown(version)}, not a whole number", path, damaged)
    if version > MANIFEST_VERSION:
        raise DatasetError(f"was written by a newer version (schema {version})", path, "update DGKIP Studio")
    for key, kind in _MANIFEST_TYPES.items():
        if key in manifest and not isinstance(manifest[key], kind):
            raise DatasetError(f"field {key!r} is {shown(manifest[key])}, not a JSON "
                               f"{'list' if kind is list else 'object'}", path, damaged)
    if not all(isinstance(c, str) for c in manifest.get("classes", [])):
        raise DatasetError("field 'classes' must list class names (text)", path, damaged)
    n = manifest.get("n_images", 0)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise DatasetError(f"field 'n_images' is {shown(n)}, not a count", path, damaged)
    return manifest


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The six arrays of ``distilled.npz``, sizes checked from their headers before decompression,
    then shapes, dtypes, label range and finiteness checked against each other."""
    from engine.data.formats import ByteBudget
    from engine.data.npz import read_members

    arrays = read_members(path, _ARRAY_KEYS, ByteBudget(), "re-export the distilled set")
    bad = _array_problem(arrays)
    if bad:
        raise DatasetError(bad, path, "re-export the distilled set")
    return arrays


def _array_problem(a: dict[str, np.ndarray]) -> str:
    """What is inconsistent about an export's arrays ("" when nothing)."""
    images, labels, pixels, classes = a["images"], a["labels"], a["pixels"], a["classes"]
    m = len(images) if images.ndim else 0
    k = len(classes) if classes.ndim == 1 else -1
    if images.ndim != 4 or images.dtype.kind != "f" or m == 0 or images.shape[-1] not in (1, 3):
        return f"holds images of {images.dtype} {images.shape}; expected float (m, H, W, 1 or 3)"
    if classes.ndim != 1 or classes.dtype.kind not in "US" or k < 2:
        return f"holds class names of {classes.dtype} {classes.shape}; expected at least two names"
    if len(set(classes.tolist())) != k:
        return "names a class twice"
    if labels.shape != (m,) or labels.dtype.kind not in "iu":
        return f"holds labels of {labels.dtype} {labels.shape} for {m} images; expected one class index each"
    if labels.min() < 0 or labels.max() >= k:
        return f"has labels {int(labels.min())}…{int(labels.max())} but {k} class names (valid: 0…{k - 1})"
    if pixels.shape != images.shape or pixels.dtype.kind not in "uif":
        return f"holds pixels of {pixels.dtype} {pixels.shape}, not the images' shape {images.shape}"
    for key in ("targets", "alpha"):
        if a[key].shape != (m, k) or a[key].dtype.kind != "f":
            return f"holds {key} of {a[key].dtype} {a[key].shape}; expected float ({m}, {k})"
    for key in ("images", "targets", "alpha"):
        if not np.isfinite(a[key]).all():
            return f"holds non-finite values (NaN or infinity) in {key}"
    return ""


def read_manifest(path: str | os.PathLike) -> tuple[Path, dict[str, Any], DistillConfig]:
    """The export folder, its ``manifest.json`` and run configuration, without loading any array
    (cheap: for listing or showing an export). Errors as in :func:`load_distilled`."""
    folder = _export_folder(path)
    manifest = _read_manifest(folder)
    if "config" not in manifest:
        raise DatasetError("has no run configuration ('config')", folder / MANIFEST, "re-export the distilled set")
    try:
        config = DistillConfig.from_dict(manifest["config"])
    except (TypeError, ConfigError) as exc:
        raise DatasetError(f"has no valid run configuration (config.{printable(exc)})", folder / MANIFEST,
                           "re-export the distilled set") from exc
    return folder, manifest, config


def load_distilled(path: str | os.PathLike) -> DistilledSet:
    """Open an export folder (or any file in it). Reads JSON, ``.npz`` without pickle and the
    preprocessing; a missing or damaged file is a :class:`DatasetError` naming it."""
    folder, manifest, config = read_manifest(path)
    a = _read_arrays(folder / ARRAYS)
    pre = Preprocessor.load(folder / PREPROCESS)
    if len(pre.mean) != a["images"].shape[-1] or (pre.shape is not None and pre.shape != a["images"].shape[1:]):
        raise DatasetError(f"was fitted on {pre.shape or len(pre.mean)} but the images are {a['images'].shape[1:]}",
                           folder / PREPROCESS, "re-export the distilled set")
    classes = [str(c) for c in a["classes"]]
    if manifest.get("classes", classes) != classes:
        raise DatasetError("lists other classes than distilled.npz", folder / MANIFEST, "re-export the distilled set")
    return DistilledSet(images=a["images"].astype(np.float32), labels=a["labels"].astype(np.int64),
                        pixels=np.clip(a["pixels"], 0, 255).astype(np.uint8), classes=classes,
                        targets=a["targets"].astype(np.float32), alpha=a["alpha"].astype(np.float64),
                        preprocess=pre, manifest=manifest, config=config, path=folder)


def check_init_from(path: str | os.PathLike, classes: list[str], image_shape: tuple[int, ...], *,
                    ipc: int) -> DistilledSet:
    """Open the export a run continues from (``--init-from``) and check it fits the run: same classes
    in the same order (labels index them), the same image shape (H, W, C) and ``ipc`` images of every
    class (the run's images per class, which its baselines and manifest use)."""
    prev = load_distilled(path)
    fix = "continue from a set distilled on the same data and classes, or start afresh (init)"
    if prev.classes != list(classes):
        raise DatasetError(f"was distilled for the classes {shown(prev.classes)}, this run uses {shown(list(classes))}",
                           prev.path, fix)
    if tuple(prev.images.shape[1:]) != tuple(image_shape):
        raise DatasetError(f"holds images of {tuple(prev.images.shape[1:])}, the dataset's are {tuple(image_shape)}",
                           prev.path, fix)
    counts = np.bincount(prev.labels, minlength=len(prev.classes))
    if not np.all(counts == ipc):
        held = f"{counts[0]} images of each class" if np.all(counts == counts[0]) else \
            f"{counts.min()}–{counts.max()} images per class"
        raise DatasetError(f"holds {held}, this run asks for {ipc}", prev.path,
                           f"set images per class (ipc, --ipc) to {counts[0]} to continue from it"
                           if np.all(counts == counts[0]) else fix)
    return prev


def update_manifest(path: str | os.PathLike, key: str, value: Any) -> None:
    """Set ``manifest[key] = value`` (JSON-serialisable) in an export, rewriting it atomically."""
    folder = _export_folder(path)
    manifest = _read_manifest(folder)
    manifest[key] = value
    _write_json(folder / MANIFEST, manifest)
