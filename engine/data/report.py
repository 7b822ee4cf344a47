"""What the user is told about a dataset before anything runs: fatal errors, per-file problems and
the dataset report (classes, counts, sizes, memory estimate)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from engine.text import printable

LARGE_DATASET_BYTES = 2 * 1024**3   # warn above this float32 training-tensor size
_LARGE_PREFIX = "Large dataset"
_SUMMARY_CLASSES = 20               # classes listed by name in summary()
_SUMMARY_PROBLEMS = 20              # problems listed in summary()


def display_path(path: str | bytes | os.PathLike) -> str:
    """A printable, JSON-safe form of a path: bytes of non-UTF-8 names become ``\\xNN``."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


def _compose(path: str | None, message: str, fix: str) -> str:
    """One line, control characters escaped (paths and names come from whoever made the data)."""
    text = f"{path}: {message}" if path else message
    return printable(f"{text} — {fix}" if fix else text)


class DatasetError(Exception):
    """A fatal problem with the input; ``str()`` names the file and says what to do.

    ``path`` is the printable path of the offending file or folder (``None`` when there is none),
    ``message`` what is wrong and ``fix`` what to do about it.
    """

    def __init__(self, message: str, path: str | bytes | os.PathLike | None = None, fix: str = ""):
        self.path = None if path is None else display_path(path)
        self.message = message
        self.fix = fix
        super().__init__(_compose(self.path, message, fix))


@dataclass(frozen=True)
class Problem:
    """A non-fatal problem. ``severity`` is ``"warning"`` (data was changed or needs attention) or
    ``"error"`` (the file was skipped)."""

    path: str
    message: str
    fix: str
    severity: str = "warning"

    def __str__(self) -> str:
        return f"{self.severity}: {_compose(self.path, self.message, self.fix)}"


def format_bytes(n: float) -> str:
    """A size in bytes for people: ``512`` → ``"512 bytes"``, ``1536`` → ``"1.5 KiB"``, ``3 * 2**30`` →
    ``"3.0 GiB"`` (binary units up to GiB, thousands separated; a negative size keeps its sign). The one
    formatter of the engine's messages and the GUI's (``dgkip_gui`` imports it)."""
    value, unit = float(n), "bytes"
    for bigger in ("KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{int(value):,} bytes" if unit == "bytes" else f"{value:,.1f} {unit}"


def memory_problem(source: str, memory_bytes: int, n_classes: int, image_shape: tuple[int, int, int],
                   limit: int) -> Problem | None:
    """A warning when the float32 training tensor (``memory_bytes``) exceeds ``limit`` bytes,
    suggesting a per-class cap that fits; ``None`` when it fits."""
    if memory_bytes <= limit:
        return None
    per_image = 4 * image_shape[0] * image_shape[1] * image_shape[2]
    cap = max(1, limit // (per_image * max(1, n_classes)))
    return Problem(source,
                   f"{_LARGE_PREFIX}: the training images need about {format_bytes(memory_bytes)} as "
                   f"float32 (more than {format_bytes(limit)})",
                   f"set a per-class cap (max_per_class), e.g. {cap} images per class stays under "
                   f"{format_bytes(limit)}")


@dataclass
class DatasetReport:
    """Everything known about a dataset before a run.

    ``image_shape`` is (H, W, C) in pixels; ``modes`` counts the source images per PIL mode
    ("L", "RGB", ...; for array formats the mode the arrays correspond to); ``memory_bytes`` is the
    estimated size of the float32 training tensor; ``memory_limit`` the size above which a
    large-dataset warning is part of ``problems``.
    """

    source: str
    format: str
    classes: list[str]
    train_counts: list[int]
    test_counts: list[int]
    image_shape: tuple[int, int, int]
    modes: dict[str, int]
    test_source: str
    memory_bytes: int
    problems: list[Problem] = field(default_factory=list)
    memory_limit: int = LARGE_DATASET_BYTES

    @classmethod
    def build(cls, *, source: str, format: str, classes: list[str], train_counts: list[int],
              test_counts: list[int], image_shape: tuple[int, int, int], modes: dict[str, int],
              test_source: str, problems: list[Problem],
              memory_limit: int = LARGE_DATASET_BYTES) -> "DatasetReport":
        """A report with ``memory_bytes`` computed and the large-dataset warning added when due."""
        report = cls(source, format, list(classes), [int(c) for c in train_counts],
                     [int(c) for c in test_counts], tuple(int(s) for s in image_shape), dict(modes),
                     test_source, 0, list(problems), memory_limit)
        return report._with_memory()

    def with_counts(self, classes: list[str], train_counts: list[int],
                    test_counts: list[int]) -> "DatasetReport":
        """The same report after classes were selected or capped (memory estimate refreshed)."""
        return dataclasses.replace(self, classes=list(classes),
                                   train_counts=[int(c) for c in train_counts],
                                   test_counts=[int(c) for c in test_counts])._with_memory()

    def _with_memory(self) -> "DatasetReport":
        h, w, c = self.image_shape
        memory = 4 * h * w * c * sum(self.train_counts)
        problems = [p for p in self.problems
                    if not (p.path == self.source and p.message.startswith(_LARGE_PREFIX))]
        warning = memory_problem(self.source, memory, len(self.classes), self.image_shape,
                                 self.memory_limit)
        return dataclasses.replace(self, memory_bytes=memory,
                                   problems=problems + ([warning] if warning else []))

    def summary(self) -> str:
        """Multi-line human-readable text for the CLI and the GUI."""
        h, w, c = self.image_shape
        n_train, n_test = sum(self.train_counts), sum(self.test_counts)
        listed = [f"{printable(name)} ({tr:,}/{te:,})" for name, tr, te in
                  zip(self.classes[:_SUMMARY_CLASSES], self.train_counts, self.test_counts)]
        if len(self.classes) > _SUMMARY_CLASSES:
            listed.append(f"… {len(self.classes) - _SUMMARY_CLASSES} more")
        modes = ", ".join(f"{m}: {n:,}" for m, n in sorted(self.modes.items()))
        lines = [
            f"Source: {printable(self.source)} ({self.format})",
            f"Classes: {len(self.classes)} — train/test images: {', '.join(listed)}",
            f"Images: {n_train:,} train, {n_test:,} test — {printable(self.test_source)}",
            f"Image size: {h}×{w}, {c} channel{'s' if c > 1 else ''} (source modes {modes})",
            f"Memory (float32 training tensor): about {format_bytes(self.memory_bytes)}",
        ]
        if self.problems:
            errors = sum(p.severity == "error" for p in self.problems)
            lines.append(f"Problems: {len(self.problems)} ({errors} skipped file"
                         f"{'' if errors == 1 else 's'})")
            lines += [f"  {p}" for p in self.problems[:_SUMMARY_PROBLEMS]]
            if len(self.problems) > _SUMMARY_PROBLEMS:
                lines.append(f"  … {len(self.problems) - _SUMMARY_PROBLEMS} more")
        else:
            lines.append("Problems: none")
        return "\n".join(lines)
