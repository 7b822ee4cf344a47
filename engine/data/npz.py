"""``.npz`` datasets: arrays ``x``/``y`` (and ``classes``) or ``images``/``labels``.

File names carry the split: ``<prefix>-train[-k].npz`` and ``<prefix>-test[-k].npz`` (also ``_`` or
``.`` as separators, ``val`` for ``test``); a name without a split word is training data. Parts are
concatenated in natural name order. One folder may hold several datasets (prefixes): then pass one
of its files, and the other files with the same prefix are picked up.
"""
from __future__ import annotations

import re
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from engine.data.formats import RawData, array_modes, as_images, as_labels, class_names, \
    concatenate, natural_key
from engine.data.report import DatasetError, Problem, display_path

_SPLIT = re.compile(r"^(?P<prefix>.*?)(?:^|[-_. ]+)(?P<split>train|test|val)(?:[-_. \d].*)?$",
                    re.IGNORECASE)
_KEYS = (("x", "y"), ("images", "labels"))


def split_name(path: Path) -> tuple[str, str]:
    """``cifar10-train-2.npz`` → ("cifar10", "train"); ``mnist-val.npz`` → ("mnist", "test");
    ``digits.npz`` → ("digits", "train")."""
    m = _SPLIT.match(path.stem)
    if m is None:
        return path.stem, "train"
    return m["prefix"], "train" if m["split"].lower() == "train" else "test"


def _read_part(path: Path,
               problems: list[Problem]) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """One file → (uint8 images (N, H, W, C), int64 labels (N,), class names or None)."""
    if not zipfile.is_zipfile(path):
        raise DatasetError("is not a readable .npz file (not a zip archive)", path,
                           "re-create or re-download it")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = next((k for k in _KEYS if k[0] in data.files and k[1] in data.files), None)
            if keys is None:
                raise DatasetError(f"has arrays ({', '.join(data.files) or 'none'}); expected 'x' "
                                   "and 'y' (optionally 'classes') or 'images' and 'labels'", path,
                                   "re-save with np.savez(path, x=images, y=labels, classes=names)")
            x, y = data[keys[0]], data[keys[1]]
            names = [str(c) for c in data["classes"]] if "classes" in data.files else None
    except ValueError as exc:   # object arrays need pickle, which is never allowed
        raise DatasetError(f"cannot be read without running pickled code ({exc})", path,
                           "re-save it with plain numeric and string arrays") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"is not a readable .npz file ({exc})", path,
                           "re-create or re-download it") from exc
    x = as_images(x, path, problems)
    return x, as_labels(y, len(x), path), names


def _group(files: list[Path]) -> dict[str, dict[str, list[Path]]]:
    groups: dict[str, dict[str, list[Path]]] = defaultdict(lambda: {"train": [], "test": []})
    for f in sorted(files, key=lambda p: natural_key(p.name)):
        prefix, split = split_name(f)
        groups[prefix][split].append(f)
    return groups


def _dataset_files(path: Path) -> tuple[str, dict[str, list[Path]]]:
    """(prefix, {"train": files, "test": files}) for a folder holding one dataset, or a file."""
    folder = path if path.is_dir() else path.parent
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


def read_npz(path: Path) -> RawData:
    """Read a single ``.npz`` (with its same-prefix siblings) or a folder holding one dataset."""
    problems: list[Problem] = []
    prefix, files = _dataset_files(path)
    parts = {split: [(f, *_read_part(f, problems)) for f in fs] for split, fs in files.items()}
    names = {tuple(n) for split in parts.values() for *_, n in split if n is not None}
    if len(names) > 1:
        raise DatasetError("the files disagree on the class names", path,
                           "store the same 'classes' array in every part")
    x_train, y_train = concatenate([p[:3] for p in parts["train"]])
    x_test, y_test = concatenate([p[:3] for p in parts["test"]]) if parts["test"] else (None, None)
    classes = class_names(list(names.pop()) if names else None,
                          [y_train] + ([y_test] if y_test is not None else []), path)
    n = len(x_train) + (len(x_test) if x_test is not None else 0)
    folder = path if path.is_dir() else path.parent
    return RawData("npz", prefix or folder.name, classes, x_train, y_train, x_test, y_test,
                   array_modes(n, x_train.shape[-1]), problems)
