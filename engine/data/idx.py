"""MNIST-style IDX files (``train-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, raw or ``.gz``).

Each images file (idx3/idx4) is paired with the labels file (idx1) whose name differs only in
``images``/``labels`` and the idx number. Names containing ``t10k`` or ``test`` are the test split.
"""
from __future__ import annotations

import gzip
import math
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from engine.data.formats import ByteBudget, RawData, array_modes, as_images, as_labels, concatenate, \
    index_labels, natural_key
from engine.data.report import DatasetError, Problem
from engine.text import printable

_NAME = re.compile(r"idx[1-4][-.]ubyte(\.gz)?$", re.IGNORECASE)
_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def is_idx_name(name: str) -> bool:
    return _NAME.search(name) is not None


def read_idx(path: Path, budget: ByteBudget, ndims: tuple[int, ...] = (1, 2, 3, 4),
             what: str = "images") -> np.ndarray:
    """One IDX file (optionally gzip-compressed) → its array, shape from the header. The header's
    dimensions are checked (``ndims`` allowed, size against ``budget``) before any data is read, and
    no more data than they promise is ever read or decompressed."""
    gz = path.suffix.lower() == ".gz"
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _DTYPES or head[3] == 0:
                raise DatasetError("is not an IDX file (unexpected header)", path,
                                   "re-download it, or move it out of the dataset folder")
            ndim, dtype = head[3], np.dtype(_DTYPES[head[2]])
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DatasetError(f"is truncated (its header promises {ndim} dimensions)", path, "re-download it")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            if ndim not in ndims:
                raise DatasetError(f"holds a {ndim}-dimensional array {dims}; expected {what} with "
                                   f"{' or '.join(map(str, ndims))} dimensions", path,
                                   "pair each images file (idx3/idx4) with its labels file (idx1)")
            nbytes = math.prod(dims) * dtype.itemsize
            header = 4 + 4 * ndim
            size = None if gz else os.fstat(f.fileno()).st_size
            if size is not None and size < header + nbytes:
                raise DatasetError(f"is truncated ({size:,} bytes, the header promises {header + nbytes:,})",
                                   path, "re-download it")
            budget.take(nbytes, path, what)
            data = f.read(nbytes)
    except DatasetError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"cannot be read ({printable(exc)})", path, "re-download it") from exc
    if len(data) < nbytes:
        raise DatasetError(f"is truncated ({header + len(data):,} bytes once decompressed, the header promises "
                           f"{header + nbytes:,})", path, "re-download it")
    return np.frombuffer(data, dtype, math.prod(dims)).reshape(dims)


def _pair_key(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    return re.sub(r"images|labels|idx\d", "", name)


def read_idx_folder(folder: Path, budget: ByteBudget | None = None) -> RawData:
    """All image/label IDX pairs in ``folder``; an uncompressed file wins over its ``.gz`` copy.
    Arrays over ``budget`` are refused from their headers."""
    budget = budget or ByteBudget()
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
        x = as_images(read_idx(f, budget, (3, 4)), f, problems)
        split = "test" if "t10k" in name or "test" in name else "train"
        y = read_idx(label_file, budget, (1,), "labels")
        parts[split].append((f, x, as_labels(y, len(x), label_file)))
    if not parts["train"]:
        raise DatasetError("has no training IDX images (e.g. train-images-idx3-ubyte)", folder,
                           "add the training images and labels files")
    x_train, y_train = concatenate(parts["train"])
    x_test, y_test = concatenate(parts["test"]) if parts["test"] else (None, None)
    classes, (y_train, y_test) = index_labels(None, [y_train, y_test], folder)
    n = len(x_train) + (len(x_test) if x_test is not None else 0)
    return RawData("idx", folder.name, classes, x_train, y_train, x_test, y_test,
                   array_modes(n, x_train.shape[-1]), problems)
