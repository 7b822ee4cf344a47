"""From what a reader returned (:class:`RawData`) to a checked :class:`Dataset`: settle the test
split (own, explicit or held out), bring every image to one size, drop empty classes, report."""
from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from engine.data.dataset import Dataset
from engine.data.formats import RawData, fit_images, unique_names
from engine.data.report import LARGE_DATASET_BYTES, DatasetError, DatasetReport, Problem
from engine.data.rows import NotShardable
from engine.text import percent, shown


def holdout_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train indices, test indices), both sorted: round(fraction·n_c) of each class
    goes to test, but every class keeps at least one training image. Seeded, reproducible."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout_fraction must be between 0 and 1 (got {fraction})")
    rng = np.random.default_rng(seed)
    test = [np.empty(0, np.int64)]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        test.append(idx[:min(int(np.floor(len(idx) * fraction + 0.5)), len(idx) - 1)])
    test_idx = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(y)), test_idx), test_idx


def _explicit_test(classes: list[str], test: RawData, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The explicit test source's own test split (else all of it), labels mapped by class name."""
    x, y = (test.x_test, test.y_test) if test.x_test is not None else (test.x_train, test.y_train)
    unknown = sorted({test.classes[i] for i in np.unique(y)} - set(classes))
    if unknown:
        raise DatasetError(f"has classes the training data lacks: {', '.join(unknown)}", where,
                           f"use a test set whose classes are among: {', '.join(classes)}")
    lut = np.array([classes.index(n) if n in classes else -1 for n in test.classes], np.int64)
    return x, lut[y]


def build_dataset(raw: RawData, *, source: str, test: RawData | None = None,
                  test_where: str = "", holdout_fraction: float = 0.2, seed: int = 0,
                  resize_to: tuple[int, int] | None = None,
                  memory_limit: int = LARGE_DATASET_BYTES) -> Dataset:
    """Make the dataset and its report. ``test`` is an explicitly given test source (read from
    ``test_where``); without it the source's own test split is used, or a stratified
    ``holdout_fraction`` of the training data (``seed``) is held out. Repeated or empty class names
    are made unique (:func:`unique_names`) and reported."""
    raw = _unique_classes(raw, source)
    test = _unique_classes(test, test_where) if test is not None else None
    problems, modes = list(raw.problems), Counter(raw.modes)
    x_train, y_train = raw.x_train, raw.y_train
    if test is not None:
        x_test, y_test = _explicit_test(raw.classes, test, test_where)
        test_source = f"explicit: {test_where}"
        problems += test.problems
        modes.update(test.modes)
        if raw.x_test is not None:
            problems.append(Problem(source, "the dataset's own test split was not used",
                                    f"nothing to do; the explicit test split {test_where} "
                                    "replaces it"))
    elif raw.x_test is not None:
        x_test, y_test, test_source = raw.x_test, raw.y_test, "test split"
    else:
        train_idx, test_idx = holdout_split(y_train, holdout_fraction, seed)
        x_train, y_train, x_test, y_test = (x_train[train_idx], y_train[train_idx],
                                            x_train[test_idx], y_train[test_idx])
        test_source = f"held out {percent(holdout_fraction)} (seed {seed})"
    image_shape = tuple(raw.rows.image_shape) if raw.rows is not None else x_train.shape[1:]
    if raw.rows is not None and (resize_to is not None or test is not None):
        raise NotShardable("resizing or an explicit test source is read whole")
    if resize_to is not None:
        x_train = fit_images(x_train, tuple(resize_to), x_train.shape[-1])
        x_test = fit_images(x_test, tuple(resize_to), x_test.shape[-1])
    if x_test.shape[1:] != x_train.shape[1:]:
        h, w, c = x_test.shape[1:]
        problems.append(Problem(test_where or source, f"test images ({h}×{w}, {c} channels) were "
                                f"converted to the training images' size and channels "
                                f"({x_train.shape[1]}×{x_train.shape[2]}, {x_train.shape[3]})",
                                "check that it is the test split of the same dataset (a test set of other "
                                "images gives meaningless accuracies); save both splits alike to skip this"))
        x_test = fit_images(x_test, x_train.shape[1:3], x_train.shape[3])
    if len(x_train) == 0:
        raise DatasetError("has no training images", source, "choose a folder or file with images")

    k = len(raw.classes)
    if raw.rows is None:                          # pixels in memory (row codes otherwise)
        for split, x, y in (("training", x_train, y_train), ("test", x_test, y_test)):
            problem = blank_problem(x, y, raw.classes, split, test_where if split == "test" and test_where else source)
            if problem is not None:
                problems.append(problem)
    train_counts, test_counts = np.bincount(y_train, minlength=k), np.bincount(y_test, minlength=k)
    untested = [c for c, tr, te in zip(raw.classes, train_counts, test_counts) if tr and not te]
    if untested:
        problems.append(Problem(source, f"{len(untested)} class{'es have' if len(untested) > 1 else ' has'} no "
                                f"test images (e.g. {shown(untested[0])}); a run on {'them' if len(untested) > 1 else 'it'} "
                                "is refused", "add images (or a test split) for them, or leave them out with classes"))
    report = DatasetReport.build(
        source=source, format=raw.format, classes=raw.classes,
        train_counts=train_counts.tolist(), test_counts=test_counts.tolist(),
        image_shape=image_shape, modes=dict(modes), test_source=test_source,
        problems=problems, memory_limit=memory_limit)
    dataset = Dataset(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64),
                      list(raw.classes), report, raw.name, raw.rows)
    empty = [c for c, n in zip(raw.classes, report.train_counts) if n == 0]
    if empty:
        dataset = dataset.select_classes([c for c in raw.classes if c not in empty])
        dataset.report.problems.append(Problem(
            source, f"{len(empty)} class{'es' if len(empty) > 1 else ''} without training images "
            f"left out: {', '.join(empty)}", "add training images for them, or ignore this"))
    if len(dataset.classes) < 2:
        raise DatasetError(f"has only one class ('{dataset.classes[0]}')", source,
                           "distillation needs at least two classes: add another class (for an "
                           "image folder, one subfolder of images per class)")
    return dataset


BLANK_CHUNK = 4096          # images per pass of blank_images (bounds its temporary arrays)


def blank_images(x: np.ndarray) -> np.ndarray:
    """(n,) bool: which of the images ``x`` (n, H, W, C) have every pixel and channel at one value (an
    all-black, all-white or otherwise flat image: no content to distil)."""
    out = np.zeros(len(x), bool)
    if x.size == 0:
        return out
    flat = x.reshape(len(x), -1)
    for i in range(0, len(x), BLANK_CHUNK):
        part = flat[i:i + BLANK_CHUNK]
        out[i:i + BLANK_CHUNK] = (part == part[:, :1]).all(axis=1)
    return out


def blank_problem(x: np.ndarray, y: np.ndarray, classes: list[str], split: str, where: str) -> Problem | None:
    """A warning naming how many of the ``split`` images ``x`` (labels ``y``) are blank
    (:func:`blank_images`), with the first one's class and value; None when none is."""
    blank = np.flatnonzero(blank_images(x))
    if not len(blank):
        return None
    n, first = len(blank), int(blank[0])
    value = x.reshape(len(x), -1)[first, 0]
    every = n == len(x)
    return Problem(where, f"{'all ' if every else ''}{n:,} of the {len(x):,} {split} images "
                   f"{'are' if n > 1 else 'is'} blank (e.g. one of class {shown(classes[int(y[first])])}, "
                   f"every pixel {value})",
                   "check the files or the program that wrote them: blank images carry nothing to "
                   "distil" + (", and a run on them means nothing" if every else
                               "; remove them to skip this"))


def _unique_classes(raw: RawData, where: str) -> RawData:
    """``raw`` with unique, non-empty class names (a warning lists what was renamed)."""
    names = unique_names(list(raw.classes))
    renamed = [(old, new) for old, new in zip(raw.classes, names) if old != new]
    if not renamed:
        return raw
    (old, new), n = renamed[0], len(renamed)
    problem = Problem(where, f"{n} class name{'s were' if n > 1 else ' was'} empty or repeated and got a "
                      f"suffix (e.g. {shown(old)} became {shown(new)})", "give every class its own name to skip this")
    return dataclasses.replace(raw, classes=names, problems=[*raw.problems, problem])
