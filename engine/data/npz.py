"""``.npz`` datasets: arrays ``x``/``y`` (and ``classes``) or ``images``/``labels``.

File names carry the split: ``<prefix>-train[-k].npz`` and ``<prefix>-test[-k].npz`` (also ``_`` or
``.`` as separators, ``val`` for ``test``); a name without a split word is training data. Parts are
concatenated in natural name order. One folder may hold several datasets (prefixes): then pass one
of its files, and the other files with the same prefix are picked up.
"""
from __future__ import annotations

import math
import re
import tokenize
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from engine.data.formats import ByteBudget, RawData, array_modes, as_images, as_labels, concatenate, \
    index_labels, natural_key
from engine.data.report import DatasetError, Problem, display_path
from engine.data.rows import NotShardable, NpzRows, encode, image_member
from engine.output import ARRAYS, is_export
from engine.text import printable

_SPLIT = re.compile(r"^(?P<prefix>.*?)(?:^|[-_. ]+)(?P<split>train|test|val)(?:[-_. \d].*)?$",
                    re.IGNORECASE)
# image and label arrays, in order of preference; "pixels" are the uint8 images of a distilled-set
# export (engine.export: its "images" are in the preprocessed space the run worked in)
_KEYS = (("x", "y"), ("pixels", "labels"), ("images", "labels"))


def split_name(path: Path) -> tuple[str, str]:
    """``cifar10-train-2.npz`` → ("cifar10", "train"); ``mnist-val.npz`` → ("mnist", "test");
    ``digits.npz`` → ("digits", "train")."""
    m = _SPLIT.match(path.stem)
    if m is None:
        return path.stem, "train"
    return m["prefix"], "train" if m["split"].lower() == "train" else "test"


def _member_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of one ``.npy`` member, from its header alone; a header that promises more bytes
    than the member holds (truncated or crafted) or an object array is a :class:`DatasetError`."""
    name = info.filename.removesuffix(".npy")
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f"unknown .npy format version {version}")
            shape, _, dtype = read(f)
            header_bytes = f.tell()
    except (ValueError, OSError, EOFError, SyntaxError, zipfile.BadZipFile, RuntimeError,
            tokenize.TokenError) as exc:     # numpy tokenizes the header: a mangled one fails there
        raise DatasetError(f"has a damaged array '{printable(name)}' ({printable(exc)})", path,
                           "re-create or re-download it") from exc
    if dtype.hasobject:     # object arrays need pickle, which is never allowed
        raise DatasetError(f"array '{printable(name)}' holds Python objects and cannot be read without "
                           "running pickled code", path, "re-save it with plain numeric and string arrays")
    promised = math.prod(shape) * dtype.itemsize
    if promised > info.file_size - header_bytes:
        raise DatasetError(f"is truncated or damaged: array '{printable(name)}' {tuple(shape)} {dtype} needs "
                           f"{promised:,} bytes but holds {max(info.file_size - header_bytes, 0):,}", path,
                           "re-create or re-download it")
    return tuple(shape), dtype


def read_members(path: Path, keys: tuple[str, ...] | list[str], budget: ByteBudget,
                 fix: str = "re-create or re-download it") -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the ``.npz`` at ``path``. Each one's size comes from its ``.npy`` header
    (checked against the zip directory: a truncated or crafted member is refused) and is charged to
    ``budget`` before anything is decompressed; pickled (object) arrays are never loaded."""
    if not zipfile.is_zipfile(path):
        raise DatasetError("is missing or damaged (not a readable .npz: not a zip archive, or truncated)", path, fix)
    try:
        with zipfile.ZipFile(path) as zf:
            members = {i.filename.removesuffix(".npy"): i for i in zf.infolist()}
            missing = [k for k in keys if k not in members]
            if missing:
                found = ", ".join(printable(k) for k in list(members)[:20]) or "none"
                raise DatasetError(f"has no array '{missing[0]}' (it has: {found})", path, fix)
            for key in keys:
                shape, dtype = _member_header(zf, members[key], path)
                budget.take(math.prod(shape) * dtype.itemsize, path, f"array '{key}'")
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in keys}
    except DatasetError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        raise DatasetError(f"is not a readable .npz file ({printable(exc)})", path, fix) from exc


def member_names(path: Path, fix: str = "re-create or re-download it") -> list[str]:
    """Array names in the ``.npz`` at ``path`` (from the zip directory)."""
    if not zipfile.is_zipfile(path):
        raise DatasetError("is missing or damaged (not a readable .npz: not a zip archive, or truncated)", path, fix)
    try:
        with zipfile.ZipFile(path) as zf:
            return [i.filename.removesuffix(".npy") for i in zf.infolist()]
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise DatasetError(f"is not a readable .npz file ({printable(exc)})", path, fix) from exc


def _read_part(path: Path, problems: list[Problem],
               budget: ByteBudget) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """One file → (uint8 images (N, H, W, C), int64 labels (N,), class names or None)."""
    names = member_names(path)
    keys = next((k for k in _KEYS if k[0] in names and k[1] in names), None)
    if keys is None:
        found = ", ".join(printable(k) for k in names[:20]) or "none"
        raise DatasetError(f"has arrays ({found}); expected 'x' and 'y' (optionally 'classes') or "
                           "'images' and 'labels'", path,
                           "re-save with np.savez(path, x=images, y=labels, classes=names)")
    arrays = read_members(path, [*keys, *(("classes",) if "classes" in names else ())], budget)
    x = as_images(arrays[keys[0]], path, problems)
    classes = _names(arrays["classes"], path) if "classes" in arrays else None
    return x, as_labels(arrays[keys[1]], len(x), path), classes


def _names(classes: np.ndarray, path: Path) -> list[str]:
    """A 1-D text (or integer) ``classes`` array → class names."""
    if classes.ndim != 1 or classes.dtype.kind not in "USiu":
        raise DatasetError(f"has a 'classes' array of {classes.dtype} {classes.shape}; expected one name per "
                           "class", path, "save classes=np.array(['cat', 'dog', …])")
    if classes.dtype.kind == "S":
        return [c.decode("utf-8", "backslashreplace") for c in classes.tolist()]
    return [str(c) for c in classes.tolist()]


def _group(files: list[Path]) -> dict[str, dict[str, list[Path]]]:
    groups: dict[str, dict[str, list[Path]]] = defaultdict(lambda: {"train": [], "test": []})
    for f in sorted(files, key=lambda p: natural_key(p.name)):
        prefix, split = split_name(f)
        groups[prefix][split].append(f)
    return groups


def _dataset_files(path: Path) -> tuple[str, dict[str, list[Path]]]:
    """(prefix, {"train": files, "test": files}) for a folder holding one dataset, or a file."""
    folder = path if path.is_dir() else path.parent
    if path.is_dir() and is_export(folder) and (folder / ARRAYS).is_file():
        return folder.name, {"train": [folder / ARRAYS], "test": []}    # an export's distilled images
    groups = _group([p for p in folder.iterdir() if p.suffix.lower() == ".npz" and p.is_file()])
    if path.is_dir():
        if len(groups) > 1:
            example = next(iter(groups.values()))["train"] or next(iter(groups.values()))["test"]
            raise DatasetError(f"holds several datasets ({', '.join(sorted(groups))})", path,
                               f"pass one file instead, e.g. {display_path(example[0])}")
        prefix = next(iter(groups))
    else:
        prefix = split_name(path)[0]
    if not groups[prefix]["train"]:
        raise DatasetError(f"has no training file for '{prefix}'", path,
                           f"add {prefix}-train.npz beside {groups[prefix]['test'][0].name}")
    return prefix, groups[prefix]


def read_npz_codes(path: Path, budget: ByteBudget | None = None) -> RawData:
    """:func:`read_npz` without decompressing the images: ``x_train``/``x_test`` are row codes
    (engine.data.rows) and ``rows`` reads the pixels of any rows later. Raises
    :class:`engine.data.rows.NotShardable` when an image array is not uint8 channels-last."""
    problems: list[Problem] = []
    budget = budget or ByteBudget()
    prefix, files = _dataset_files(path)
    members: dict[str, list] = {"train": [], "test": []}
    labels: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    names = set()
    for split, fs in files.items():
        for f in fs:
            present = member_names(f)
            keys = next((k for k in _KEYS if k[0] in present and k[1] in present), None)
            if keys is None:
                raise NotShardable(f"{f.name}: no x/y or images/labels arrays")
            member = image_member(f, keys[0])
            if members["train"] and member.shape[1:] != members["train"][0].shape[1:]:
                raise DatasetError(f"images are {member.shape[1:]} but {members['train'][0].path.name} has "
                                   f"{members['train'][0].shape[1:]}", f, "all parts of a dataset must have the same image size")
            arrays = read_members(f, [keys[1], *(("classes",) if "classes" in present else ())], budget)
            members[split].append(member)
            labels[split].append(as_labels(arrays[keys[1]], member.shape[0], f))
            if "classes" in arrays:
                names.add(tuple(_names(arrays["classes"], f)))
    if len(names) > 1:
        raise DatasetError("the files disagree on the class names", path, "store the same 'classes' array in every part")
    y_train = np.concatenate(labels["train"])
    y_test = np.concatenate(labels["test"]) if labels["test"] else None
    classes, (y_train, y_test) = index_labels(list(names.pop()) if names else None, [y_train, y_test], path)
    x_test = encode(np.arange(len(y_test)), test=True) if y_test is not None else None
    folder = path if path.is_dir() else path.parent
    channels = members["train"][0].shape[-1]
    return RawData("npz", prefix or folder.name, classes, encode(np.arange(len(y_train))), y_train, x_test, y_test,
                   array_modes(len(y_train) + (len(y_test) if y_test is not None else 0), channels), problems,
                   rows=NpzRows(members["train"], members["test"]))


def read_npz(path: Path, budget: ByteBudget | None = None) -> RawData:
    """Read a single ``.npz`` (with its same-prefix siblings) or a folder holding one dataset; arrays
    larger than ``budget`` allows are refused before they are decompressed."""
    problems: list[Problem] = []
    budget = budget or ByteBudget()
    prefix, files = _dataset_files(path)
    parts = {split: [(f, *_read_part(f, problems, budget)) for f in fs] for split, fs in files.items()}
    names = {tuple(n) for split in parts.values() for *_, n in split if n is not None}
    if len(names) > 1:
        raise DatasetError("the files disagree on the class names", path,
                           "store the same 'classes' array in every part")
    x_train, y_train = concatenate([p[:3] for p in parts["train"]])
    x_test, y_test = concatenate([p[:3] for p in parts["test"]]) if parts["test"] else (None, None)
    classes, (y_train, y_test) = index_labels(list(names.pop()) if names else None, [y_train, y_test], path)
    n = len(x_train) + (len(x_test) if x_test is not None else 0)
    folder = path if path.is_dir() else path.parent
    return RawData("npz", prefix or folder.name, classes, x_train, y_train, x_test, y_test,
                   array_modes(n, x_train.shape[-1]), problems)
