"""The loaded dataset (uint8 pixels + labels + report) and the operations a run applies to it."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from engine.data.report import DatasetError, DatasetReport, Problem
from engine.text import percent, shown


@dataclass
class Dataset:
    """Images: uint8 (N, H, W, C) pixels, C = 1 or 3; labels: int64 indices into ``classes``. With
    ``rows`` (a sharded run's reader, engine.data.rows) the image arrays hold row codes (N, 1, 8, 1)
    and the pixels of any rows come from ``rows.read(decode(x[i]))``; ``report.image_shape`` is the
    pixels' shape."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    report: DatasetReport
    name: str
    rows: Any = None        # engine.data.rows.NpzRows: x_train/x_test hold row codes, pixels are read by row

    def fingerprint(self) -> str:
        """SHA-256 hex digest of the train/test arrays (dtype, shape, bytes) and the class names. For a
        row-coded dataset the arrays are the row codes, and the source files' bytes are hashed too
        (a different digest from the same data loaded whole)."""
        h = hashlib.sha256()
        if self.rows is not None:
            for path in self.rows.paths():
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(2**24), b""):
                        h.update(block)
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).data)
        h.update(json.dumps(self.classes).encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (for ``DistillResult.dataset`` and the export manifest), with every
        problem found while loading: ``skipped`` lists each file left out and why."""
        r = self.report
        return {"name": self.name, "source": r.source, "format": r.format, "classes": self.classes,
                "train_counts": r.train_counts, "test_counts": r.test_counts,
                "image_shape": list(r.image_shape), "test_source": r.test_source,
                "fingerprint": self.fingerprint(),
                "skipped": [{"path": p.path, "reason": p.message} for p in r.problems if p.severity == "error"],
                "problems": [dataclasses.asdict(p) for p in r.problems]}

    def select_classes(self, names: list[str]) -> "Dataset":
        """Keep only ``names``, relabelled 0 … k−1 in the given order."""
        unknown = [n for n in names if n not in self.classes]
        if unknown or len(set(names)) != len(names):
            problem = (f"has no class {', '.join(map(repr, unknown))}" if unknown
                       else f"class list {names!r} names a class twice")
            raise DatasetError(problem, self.report.source,
                               f"choose among its classes: {', '.join(self.classes)}")
        lut = np.full(len(self.classes), -1, np.int64)
        lut[[self.classes.index(n) for n in names]] = np.arange(len(names))
        train, test = lut[self.y_train] >= 0, lut[self.y_test] >= 0
        return self._with(self.x_train[train], lut[self.y_train[train]],
                          self.x_test[test], lut[self.y_test[test]], list(names))

    def cap_per_class(self, n: int, seed: int) -> "Dataset":
        """At most ``n`` training images per class, drawn without replacement (seeded), kept in
        their original order; the test split is unchanged."""
        if n < 1:
            raise ValueError(f"per-class cap must be ≥ 1 (got {n})")
        rng = np.random.default_rng(seed)
        keep = []
        for c in range(len(self.classes)):
            idx = np.flatnonzero(self.y_train == c)
            keep.append(rng.choice(idx, n, replace=False) if len(idx) > n else idx)
        keep = np.sort(np.concatenate(keep))
        return self._with(self.x_train[keep], self.y_train[keep], self.x_test, self.y_test,
                          self.classes)

    def _with(self, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
              y_test: np.ndarray, classes: list[str]) -> "Dataset":
        k = len(classes)
        report = self.report.with_counts(classes, np.bincount(y_train, minlength=k).tolist(),
                                         np.bincount(y_test, minlength=k).tolist())
        return Dataset(x_train, y_train, x_test, y_test, classes, report, self.name, self.rows)


def check_ipc(dataset: Dataset, ipc: int) -> list[Problem]:
    """Warnings for the classes with fewer training images than ``ipc`` synthetic images each."""
    counts = dict(zip(dataset.classes, dataset.report.train_counts))
    fewest = min(counts.values())
    return [Problem(dataset.report.source,
                    f"class '{name}' has {n} training image{'' if n == 1 else 's'}, fewer than the "
                    f"{ipc} images per class requested",
                    f"lower images per class to {fewest} or fewer, or add images to '{name}'")
            for name, n in counts.items() if n < ipc]


def holdout_minimum(fraction: float) -> int:
    """The fewest images a class needs for a stratified hold-out of ``fraction`` to give it at least one
    test image and keep one for training (round(n·fraction) ≥ 1, see ``build.holdout_split``)."""
    n = max(2, math.ceil(0.5 / fraction))
    while min(math.floor(n * fraction + 0.5), n - 1) < 1:
        n += 1
    return n


def untested_classes(dataset: Dataset, chosen: Iterable[str] | None = None) -> list[str]:
    """The classes of ``dataset`` (of those ``chosen``, when given) without a test image, in the
    dataset's order: :func:`check_test_split` refuses a run on them (the app turns Distil off)."""
    wanted = None if chosen is None else set(chosen)
    return [c for c, t in zip(dataset.classes, dataset.report.test_counts)
            if t == 0 and (wanted is None or c in wanted)]


def check_test_split(dataset: Dataset, holdout_fraction: float) -> None:
    """Refuse (before any teacher is fitted) a dataset in which a class has no test images, saying how
    many images per class a held-out split needs, or what to add to an explicit one."""
    r = dataset.report
    untested = set(untested_classes(dataset))
    empty = [(c, n) for c, n in zip(dataset.classes, r.train_counts) if c in untested]
    if not empty:
        return
    names = ", ".join(shown(c) for c, _ in empty[:5]) + (f" and {len(empty) - 5:,} more" if len(empty) > 5 else "")
    what = f"{len(empty):,} class{'es have' if len(empty) > 1 else ' has'} no test images ({names})"
    if r.test_source.startswith("held out"):
        need = holdout_minimum(holdout_fraction)
        fewest = min(n for _, n in empty)
        raise_it = "raise holdout_fraction, " if fewest >= 2 else ""    # one image cannot be split however held out
        raise DatasetError(f"{what}: holding out {percent(holdout_fraction)} of a class of {fewest} image"
                           f"{'' if fewest == 1 else 's'} leaves none to test on", r.source,
                           f"each class needs at least {need} images for a {percent(holdout_fraction)} hold-out: add "
                           f"images, {raise_it}give a test split (test_data), or leave those classes out (classes)")
    raise DatasetError(f"{what} in the test split ({r.test_source})", r.source,
                       "add test images for them, or leave them out (classes)")
