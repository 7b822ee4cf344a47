"""CIFAR-10 / CIFAR-100 "python version" folders (``data_batch_1`` … ``test_batch`` +
``batches.meta``, or ``train``/``test`` + ``meta``).

The batches are pickles. They are read by an unpickler that can only rebuild numpy arrays and
dtypes (the only objects the format holds besides dicts, lists, bytes and numbers), so a crafted
file cannot run code: any other global is refused and the file is reported as unsafe.
"""
from __future__ import annotations

import math
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from engine.data.formats import ByteBudget, RawData, array_modes, concatenate, index_labels, natural_key
from engine.data.report import DatasetError

_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),      # how Python 3 protocol-2 pickles store bytes
}
_BATCH = re.compile(r"data_batch_\d+$")
_VARIANTS = {   # variant: (train files, test file, meta file, labels key, names key)
    "cifar10": (None, "test_batch", "batches.meta", "labels", "label_names"),
    "cifar100": (["train"], "test", "meta", "fine_labels", "fine_label_names"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):   # numpy ≥ 2 renamed it
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return super().find_class(module, name)


def load_pickle(path: Path, budget: ByteBudget | None = None) -> Any:
    """Unpickle ``path`` (Python 2 strings as bytes) allowing numpy arrays only; never runs code.
    What a pickle builds is bounded by its size (no opcode repeats data), so ``budget`` is charged
    the file's size before it is read."""
    try:
        if budget is not None:
            budget.take(path.stat().st_size, path, "batch")
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DatasetError(f"is not a plain CIFAR batch ({exc}); it was not loaded", path,
                           "use the original CIFAR python files") from exc
    except OSError as exc:
        raise DatasetError(f"cannot be read ({exc.strerror})", path,
                           "check its permissions") from exc
    except Exception as exc:    # a corrupt pickle can fail in many ways; none may crash the app
        raise DatasetError(f"is corrupt ({type(exc).__name__}: {exc})", path,
                           "re-download the CIFAR python version") from exc


def variant(folder: Path) -> str | None:
    """"cifar10", "cifar100" or None for a folder that is not a CIFAR python folder."""
    names = {p.name for p in folder.iterdir() if p.is_file()}
    if any(_BATCH.match(n) for n in names):
        return "cifar10"
    return "cifar100" if {"train", "meta"} <= names else None


def _field(batch: Any, key: str, path: Path) -> Any:
    if isinstance(batch, dict):
        for k in (key.encode(), key):
            if k in batch:
                return batch[k]
    raise DatasetError(f"has no '{key}' entry", path, "use the original CIFAR python files")


def _read_batch(path: Path, labels_key: str, budget: ByteBudget) -> tuple[Path, np.ndarray, np.ndarray]:
    """One batch → (path, uint8 images (N, s, s, 3), int64 labels (N,))."""
    batch = load_pickle(path, budget)
    data = np.asarray(_field(batch, "data", path))
    labels = np.asarray(_field(batch, labels_key, path))
    side = math.isqrt(data.shape[-1] // 3) if data.ndim == 2 else 0
    if data.dtype != np.uint8 or side == 0 or data.shape[1] != 3 * side * side \
            or labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer) \
            or (len(labels) and labels.min() < 0):
        raise DatasetError(f"has data {data.dtype} {data.shape} and labels {labels.shape}; expected "
                           "uint8 (N, 3·s·s) and N integer labels", path,
                           "use the original CIFAR python files")
    x = data.reshape(len(data), 3, side, side).transpose(0, 2, 3, 1)
    return path, np.ascontiguousarray(x), labels.astype(np.int64)


def _names(value: Any, path: Path) -> list[str]:
    """The class-name list of a meta file (bytes or text entries)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(n, (bytes, str)) for n in value):
        raise DatasetError("has no list of class names", path, "use the original CIFAR python files")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in value]


def read_cifar(folder: Path, kind: str, budget: ByteBudget | None = None) -> RawData:
    """Read a CIFAR python folder of the given ``kind`` (see :func:`variant`); files larger than
    ``budget`` allows are refused before they are read."""
    budget = budget or ByteBudget()
    train_names, test_name, meta_name, labels_key, names_key = _VARIANTS[kind]
    if train_names is None:
        train_names = sorted((p.name for p in folder.iterdir() if _BATCH.match(p.name)),
                             key=natural_key)
    x_train, y_train = concatenate([_read_batch(folder / n, labels_key, budget) for n in train_names])
    test = folder / test_name
    x_test, y_test = (concatenate([_read_batch(test, labels_key, budget)]) if test.is_file()
                      else (None, None))
    meta = folder / meta_name
    names = _names(_field(load_pickle(meta, budget), names_key, meta), meta) if meta.is_file() else None
    classes, (y_train, y_test) = index_labels(names, [y_train, y_test], folder)
    n = len(x_train) + (len(x_test) if x_test is not None else 0)
    return RawData("cifar-python", kind, classes, x_train, y_train, x_test, y_test,
                   array_modes(n, 3))
