"""``load_dataset``: recognise the format of a path and read it.

Recognised, in this order: ``"sample"``; an ``.npz`` file; a CIFAR python folder; a folder of
MNIST IDX files; a folder of ``.npz`` files; an image folder (one subfolder per class). A file
inside a CIFAR or IDX folder stands for its folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from engine.data.build import build_dataset
from engine.data.cifar import read_cifar, variant
from engine.data.dataset import Dataset
from engine.data.folder import Progress, read_image_folder
from engine.data.formats import DEFAULT_MAX_BYTES, ByteBudget, RawData
from engine.data.idx import is_idx_name, read_idx_folder
from engine.data.npz import read_npz, read_npz_codes
from engine.data.rows import NotShardable
from engine.data.report import LARGE_DATASET_BYTES, DatasetError, display_path
from engine.data.sample import SAMPLE, sample_raw


def read_source(path: Path, *, resize_to: tuple[int, int] | None = None,
                progress: Progress | None = None, budget: ByteBudget | None = None, by_row: bool = False) -> RawData:
    """Read whatever dataset ``path`` holds; any failure is a :class:`DatasetError` naming a file.
    Decoded arrays are charged to ``budget`` (default: :data:`DEFAULT_MAX_BYTES`) before they are
    allocated. ``by_row``: row codes instead of pixels (engine.data.rows), or :class:`NotShardable`."""
    budget = budget or ByteBudget()
    if by_row:
        is_npz = path.is_file() and path.suffix.lower() == ".npz" or path.is_dir() and any(
            p.suffix.lower() == ".npz" for p in path.iterdir())
        if not is_npz:
            raise NotShardable(f"{path.name} is not an .npz dataset")
        try:
            return read_npz_codes(path, budget)
        except OSError as exc:
            raise DatasetError(f"cannot be read ({exc.strerror or exc})", exc.filename or path,
                               "check that it exists and that you may read it") from exc
    try:
        if not path.exists():
            raise DatasetError("does not exist", path,
                               "check the path, or use 'sample' for the built-in digits")
        if path.is_file() and path.suffix.lower() == ".npz":
            return read_npz(path, budget)
        folder = path if path.is_dir() else path.parent
        kind = variant(folder)
        if kind is not None:
            return read_cifar(folder, kind, budget)
        names = [p.name for p in folder.iterdir() if p.is_file()]     # class folders may be named anything
        if any(is_idx_name(n) for n in names):
            return read_idx_folder(folder, budget)
        if path.is_file():
            raise DatasetError("is not a dataset file", path, "choose an .npz file, or a folder "
                               "(one subfolder per class, MNIST IDX or CIFAR python files)")
        if any(n.lower().endswith(".npz") for n in names):
            return read_npz(folder, budget)
        return read_image_folder(folder, resize_to=resize_to, progress=progress, budget=budget)
    except OSError as exc:
        raise DatasetError(f"cannot be read ({exc.strerror or exc})", exc.filename or path,
                           "check that it exists and that you may read it") from exc


def load_dataset(path: str | os.PathLike, *, test_path: str | os.PathLike | None = None,
                 holdout_fraction: float = 0.2, seed: int = 0,
                 resize_to: tuple[int, int] | None = None,
                 progress: Progress | None = None,
                 memory_limit: int = LARGE_DATASET_BYTES, max_bytes: int = DEFAULT_MAX_BYTES,
                 by_row: bool = False) -> Dataset:
    """Load a dataset (``"sample"`` for the built-in digits) with its report.

    ``test_path`` gives the test split explicitly (its own test part if it has one, else all of
    it); otherwise the source's test split is used, or a stratified ``holdout_fraction`` held out
    with ``seed``. ``resize_to`` = (H, W) resizes every image (default: mixed-size image folders
    go to their most common size). ``progress(done, total)`` reports image-folder decoding.
    ``memory_limit`` (bytes) is where the large-dataset warning starts; a dataset whose decoded
    arrays (train and test together) would exceed ``max_bytes`` is refused, from the file headers,
    before it is decoded. ``by_row`` (a rank of a sharded run): the images are row codes read later
    by row (:mod:`engine.data.rows`); sources that cannot be raise :class:`NotShardable`.
    """
    budget = ByteBudget(max_bytes)
    if by_row and (os.fspath(path) == SAMPLE or test_path is not None or resize_to is not None):
        raise NotShardable("the built-in sample, an explicit test source and resizing are read whole")
    if os.fspath(path) == SAMPLE:
        raw, source = sample_raw(), SAMPLE
    else:
        full = Path(os.path.abspath(path))
        raw, source = (read_source(full, resize_to=resize_to, progress=progress, budget=budget, by_row=by_row),
                       display_path(full))
    test, test_where = None, ""
    if test_path is not None:
        full_test = Path(os.path.abspath(test_path))
        test, test_where = read_source(full_test, resize_to=resize_to, budget=budget), display_path(full_test)
    return build_dataset(raw, source=source, test=test, test_where=test_where,
                         holdout_fraction=holdout_fraction, seed=seed, resize_to=resize_to,
                         memory_limit=memory_limit)
