"""MNIST-style IDX files (``train-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, raw or ``.gz``).

Each images file (idx3/idx4) is paired with the labels file (idx1) whose name differs only in
``images``/``labels`` and the idx number. Names containing ``t10k`` or ``test`` are the test split.
"""
from __future__ import annotations

import gzip
import math
import re
import struct
from pathlib import Path

import numpy as np

from engine.data.formats import RawData, array_modes, as_images, as_labels, class_names, \
    concatenate, natural_key
from engine.data.report import DatasetError, Problem

_NAME = re.compile(r"idx[1-4][-.]ubyte(\.gz)?$", re.IGNORECASE)
_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def is_idx_name(name: str) -> bool:
    return _NAME.search(name) is not None


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (optionally gzip-compressed) → its array, shape from the header."""
    try:
        raw = path.read_bytes()
        raw = gzip.decompress(raw) if path.suffix.lower() == ".gz" else raw
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot be read ({exc})", path, "re-download it") from exc
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _DTYPES or raw[3] == 0:
        raise DatasetError("is not an IDX file (unexpected header)", path,
                           "re-download it, or move it out of the dataset folder")
    ndim, header = raw[3], 4 + 4 * raw[3]
    dtype = np.dtype(_DTYPES[raw[2]])
    dims = struct.unpack(f">{ndim}I", raw[4:header]) if len(raw) >= header else None
    expected = header + math.prod(dims) * dtype.itemsize if dims is not None else header
    if len(raw) < expected:
        raise DatasetError(f"is truncated ({len(raw):,} bytes, the header promises {expected:,})",
                           path, "re-download it")
    return np.frombuffer(raw, dtype, math.prod(dims), header).reshape(dims)


def _pair_key(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    return re.sub(r"images|labels|idx\d", "", name)


def read_idx_folder(folder: Path) -> RawData:
    """All image/label IDX pairs in ``folder``; an uncompressed file wins over its ``.gz`` copy."""
    files: dict[str, Path] = {}
    for f in sorted(folder.iterdir(), key=lambda p: p.suffix.lower() != ".gz"):
        if f.is_file() and is_idx_name(f.name):
            files[f.name.lower().removesuffix(".gz")] = f
    labels = {_pair_key(f): f for name, f in files.items() if "idx1" in name}
    problems: list[Problem] = []
    parts: dict[str, list[tuple[Path, np.ndarray, np.ndarray]]] = {"train": [], "test": []}
    for name, f in sorted(files.items(), key=lambda kv: natural_key(kv[0])):
        if "idx1" in name:
            continue
        label_file = labels.get(_pair_key(f))
        if label_file is None:
            expected = re.sub(r"idx[2-4]", "idx1", name.replace("images", "labels"))
            raise DatasetError("has no matching labels file", f,
                               f"put its labels file ({expected}) beside it")
        x = as_images(read_idx(f), f, problems)
        split = "test" if "t10k" in name or "test" in name else "train"
        parts[split].append((f, x, as_labels(read_idx(label_file), len(x), label_file)))
    if not parts["train"]:
        raise DatasetError("has no training IDX images (e.g. train-images-idx3-ubyte)", folder,
                           "add the training images and labels files")
    x_train, y_train = concatenate(parts["train"])
    x_test, y_test = concatenate(parts["test"]) if parts["test"] else (None, None)
    classes = class_names(None, [y_train] + ([y_test] if y_test is not None else []), folder)
    n = len(x_train) + (len(x_test) if x_test is not None else 0)
    return RawData("idx", folder.name, classes, x_train, y_train, x_test, y_test,
                   array_modes(n, x_train.shape[-1]), problems)
