"""Image-folder datasets: one subfolder per class (as torchvision's ``ImageFolder`` reads them),
optionally under ``train/`` and ``test/`` (or ``val/``).

Files are read recursively inside each class folder, following symbolic links but never into a
folder twice (so link loops end). Hidden entries (``.DS_Store``, ``._x.jpg``) are skipped,
non-image files ignored, unreadable or empty images skipped and listed as problems.
"""
from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from engine.data.formats import ByteBudget, RawData, fit_image
from engine.data.report import DatasetError, Problem, display_path
from engine.text import printable

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")
TEST_FOLDERS = ("test", "val")          # in order of preference, beside a "train" folder
_FORMATS = "PNG, JPEG, BMP, GIF, TIFF or WebP"
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
                  Image.DecompressionBombWarning)
MAX_IMAGE_PIXELS = 4096 * 4096          # per image, from its header; Pillow's own limit is 10× larger
_GRAY_MODES = ("1", "L", "LA", "La", "I", "F")

Progress = Callable[[int, int], None]


@dataclass
class _Image:
    path: Path
    label: int
    test: bool
    pixels: np.ndarray      # uint8 (h, w, 1 or 3), native size
    mode: str               # PIL mode of the file


class _Walker:
    """Lists folders, remembering every folder read so that links back into them are skipped."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        self.ignored: list[Path] = []
        self._seen: set[tuple[int, int]] = set()

    def entries(self, folder: Path) -> list[tuple[Path, os.stat_result]]:
        """Visible entries of ``folder`` with their (link-followed) status, sorted by name."""
        try:
            with os.scandir(folder) as it:
                names = sorted((e.name, e.path) for e in it if not e.name.startswith("."))
        except OSError as exc:
            self.problems.append(Problem(display_path(folder), f"cannot list this folder "
                                         f"({exc.strerror})", "check its permissions", "error"))
            return []
        out = []
        for _, path in names:
            try:
                out.append((Path(path), os.stat(path)))
            except OSError as exc:
                self._unreadable(Path(path), exc)
        return out

    def enter(self, folder: Path) -> bool:
        """Mark ``folder`` as read; ``False`` (with a warning) if it was read before."""
        st = os.stat(folder)
        key = (st.st_dev, st.st_ino)
        if key in self._seen:
            self.problems.append(Problem(display_path(folder), "symbolic link loop (or a second "
                                         "link to a folder already read); skipped",
                                         "remove the link if it is not meant to be there"))
            return False
        self._seen.add(key)
        return True

    def subfolders(self, folder: Path) -> list[Path]:
        return [p for p, st in self.entries(folder) if stat.S_ISDIR(st.st_mode)]

    def image_files(self, folder: Path) -> list[Path]:
        """Image files anywhere under ``folder`` (entered before), sorted by path."""
        found, stack = [], [folder]
        while stack:
            for path, st in self.entries(stack.pop()):
                if stat.S_ISDIR(st.st_mode):
                    if self.enter(path):
                        stack.append(path)
                elif stat.S_ISREG(st.st_mode) and path.suffix.lower() in IMAGE_EXTENSIONS:
                    found.append(path)
                else:
                    self.ignored.append(path)
        return sorted(found)

    def _unreadable(self, path: Path, exc: OSError) -> None:
        if exc.errno == errno.ELOOP:
            self.problems.append(Problem(display_path(path), "symbolic link loop; skipped",
                                         "remove or fix the link"))
        elif exc.errno == errno.ENOENT:
            self.problems.append(Problem(display_path(path), "broken symbolic link; skipped",
                                         "remove or fix the link"))
        else:
            self.problems.append(Problem(display_path(path), f"cannot read ({exc.strerror})",
                                         "check the file's permissions", "error"))


def _pixels(img: Image.Image) -> np.ndarray:
    """A decoded image → uint8 (h, w, 1) for grayscale modes, (h, w, 3) otherwise. 16-bit images
    are scaled by 255/65535; 32-bit integer or float ones only when they exceed 255."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16") or (a.size and a.max() > 255):
            a = a * (255 / 65535)
        return np.rint(np.clip(a, 0, 255)).astype(np.uint8)[..., None]
    if img.mode in ("1", "L", "LA", "La"):
        return np.asarray(img.convert("L"))[..., None]
    return np.asarray(img.convert("RGB"))


def _decode(path: Path, problems: list[Problem], budget: ByteBudget) -> tuple[np.ndarray, str] | None:
    """Read one image file; ``None`` (with an "error" problem) when it cannot be used. Its size is
    read from the header first: an image over :data:`MAX_IMAGE_PIXELS` is skipped undecoded, and its
    decoded bytes are charged to ``budget`` (a :class:`DatasetError` when the dataset outgrows it)."""
    where = display_path(path)
    try:
        if path.stat().st_size == 0:
            problems.append(Problem(where, "empty file (0 bytes); skipped",
                                    "delete it or replace it with a valid image", "error"))
            return None
        with Image.open(path) as img:
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                problems.append(Problem(where, f"is {w:,}×{h:,} pixels, over the limit of {MAX_IMAGE_PIXELS:,} "
                                        "pixels per image; skipped without decoding",
                                        "downscale it (distillation works on small images), or delete it",
                                        "error"))
                return None
            channels = 1 if img.mode.split(";")[0] in _GRAY_MODES else 3
            budget.take(w * h * channels, path, "images (up to this one)")
            img.load()
            return _pixels(img), img.mode
    except PermissionError as exc:
        problems.append(Problem(where, f"cannot open this image ({exc.strerror}); skipped",
                                "check the file's permissions", "error"))
    except _DECODE_ERRORS as exc:
        problems.append(Problem(where, f"cannot read this image ({printable(exc)}); skipped",
                                f"re-save it as {_FORMATS}, or delete it", "error"))
    return None


def _no_classes_error(root: Path, walker: _Walker) -> DatasetError:
    loose = [p for p, st in walker.entries(root) if p.suffix.lower() in IMAGE_EXTENSIONS]
    if loose:
        return DatasetError(f"holds {len(loose)} images but no class subfolders", root,
                            "put each class's images in its own subfolder, e.g. "
                            f"{display_path(root / 'cat')}/ and {display_path(root / 'dog')}/")
    return DatasetError("is not a dataset: no class subfolders, .npz, IDX or CIFAR batch files",
                        root, "choose a folder with one subfolder of images per class, an .npz "
                        "file, an MNIST IDX folder, a CIFAR python folder, or 'sample'")


def _split_folders(root: Path, walker: _Walker) -> tuple[Path, Path | None]:
    """(train folder, test folder or None): ``root/train`` + ``root/test|val`` if present."""
    by_name = {p.name.lower(): p for p in walker.subfolders(root)}
    if "train" not in by_name:
        return root, None
    tests = [by_name[n] for n in TEST_FOLDERS if n in by_name]
    for extra in tests[1:]:
        walker.problems.append(Problem(display_path(extra), f"ignored because "
                                       f"{tests[0].name}/ is used as the test split",
                                       "remove or rename it if it should be used"))
    for folder in [by_name["train"]] + tests[:1]:
        walker.enter(folder)
    return by_name["train"], (tests[0] if tests else None)


def _enter_classes(folder: Path, walker: _Walker) -> list[Path]:
    """The class subfolders of ``folder``, all entered before any is walked so that a link from
    one class into another is recognised whatever the order. A subfolder that links to a folder
    already read is left out (and listed as a problem)."""
    return [d for d in walker.subfolders(folder) if walker.enter(d)]


def read_image_folder(root: Path, *, resize_to: tuple[int, int] | None = None,
                      progress: Progress | None = None, budget: ByteBudget | None = None) -> RawData:
    """Read an image-folder dataset. Mixed sizes are resized to ``resize_to`` (H, W) or the most
    common size; mixed grayscale/colour are all converted to RGB. ``progress(done, total)`` is
    called while decoding. Decoded pixels (native sizes, then the stacked arrays) are charged to
    ``budget`` before they are allocated."""
    budget = budget or ByteBudget()
    problems: list[Problem] = []
    walker = _Walker(problems)
    walker.enter(root)
    train_dir, test_dir = _split_folders(root, walker)
    class_dirs = _enter_classes(train_dir, walker)
    if not class_dirs:
        raise _no_classes_error(train_dir, walker)
    test_dirs = _enter_classes(test_dir, walker) if test_dir is not None else []
    classes = [display_path(p.name) for p in class_dirs]
    files = [(f, label, False) for label, d in enumerate(class_dirs) for f in walker.image_files(d)]
    for d in test_dirs:
        name = display_path(d.name)
        if name in classes:
            files += [(f, classes.index(name), True) for f in walker.image_files(d)]
        else:
            n = len(walker.image_files(d))
            problems.append(Problem(display_path(d), f"no training class '{name}'; its {n} "
                                    "test files were ignored",
                                    f"add {name}/ to {display_path(train_dir)} or remove it"))
    if walker.ignored:
        example = display_path(walker.ignored[0].relative_to(root))
        problems.append(Problem(display_path(root), f"{len(walker.ignored)} non-image files were "
                                f"ignored (e.g. {example})",
                                f"nothing to do; only {_FORMATS} files are read"))

    images = []
    step = max(1, len(files) // 200)
    for done, (path, label, test) in enumerate(files, 1):
        decoded = _decode(path, problems, budget)
        if decoded is not None:
            images.append(_Image(path, label, test, *decoded))
        if progress is not None and (done % step == 0 or done == len(files)):
            progress(done, len(files))
    if not images:
        first = next((p for p in problems if p.severity == "error"), None)
        raise DatasetError("no readable images in the class folders"
                           + (f" (e.g. {first.path}: {first.message})" if first else ""),
                           root, f"add {_FORMATS} images, one subfolder per class")
    return _assemble(root, classes, images, resize_to, problems, budget)


def _assemble(root: Path, classes: list[str], images: list[_Image],
              resize_to: tuple[int, int] | None, problems: list[Problem], budget: ByteBudget) -> RawData:
    """Bring the decoded images to one size and channel count and stack them."""
    sizes = Counter(im.pixels.shape[:2] for im in images)
    size = tuple(resize_to) if resize_to else sizes.most_common(1)[0][0]
    channels = max(im.pixels.shape[2] for im in images)
    where = display_path(root)
    budget.take(len(images) * size[0] * size[1] * channels, root, f"images resized to {size[0]}×{size[1]}")
    odd = [im for im in images if im.pixels.shape[:2] != size]
    if odd and resize_to is None:
        h, w = odd[0].pixels.shape[:2]
        problems.append(Problem(where, f"images have {len(sizes)} different sizes; {len(odd)} were "
                                f"resized to the most common, {size[0]}×{size[1]} (e.g. "
                                f"{display_path(odd[0].path.relative_to(root))} is {h}×{w})",
                                "resize the files to one size yourself to choose another"))
    gray = [im for im in images if im.pixels.shape[2] != channels]
    if gray:
        example = display_path(gray[0].path.relative_to(root))
        problems.append(Problem(where, f"{len(gray)} grayscale images were converted to RGB to "
                                f"match the others (e.g. {example})",
                                "nothing to do; convert the files to RGB to skip this"))

    def stack(test: bool) -> tuple[np.ndarray, np.ndarray]:
        part = [im for im in images if im.test == test]
        x = np.empty((len(part), size[0], size[1], channels), np.uint8)
        for i, im in enumerate(part):
            x[i] = fit_image(im.pixels, size, channels)
        return x, np.array([im.label for im in part], np.int64)

    x_train, y_train = stack(False)
    has_test = any(im.test for im in images)
    x_test, y_test = stack(True) if has_test else (None, None)
    return RawData("image-folder", root.name, classes, x_train, y_train, x_test, y_test,
                   dict(Counter(im.mode for im in images)), problems)
