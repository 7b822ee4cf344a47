"""Where an export goes, and what the user is told when writing fails.

The export dialog returns a folder path; what happens next depends on what is there (:func:`classify`):
a new or empty folder receives the export, an earlier export is replaced only after the user agrees,
any other non-empty folder is never replaced (the user may agree to a new subfolder inside it), and a
file is refused. Write failures become one sentence naming the folder and the fix
(:func:`write_error_message`) instead of ``[Errno 1] Operation not permitted: '…' -> '….old'``.
"""
from __future__ import annotations

import errno
from pathlib import Path

from engine.export import MANIFEST

NEW, EMPTY, EXPORT, OTHER, FILE = "new", "empty", "export", "other", "file"


def classify(target: Path) -> str:
    """What ``target`` is: ``new`` (nothing there), ``empty`` (an empty folder), ``export`` (an earlier
    export: it has a manifest), ``other`` (a folder holding something else) or ``file``."""
    if not target.exists():
        return NEW
    if not target.is_dir():
        return FILE
    if not any(target.iterdir()):
        return EMPTY
    return EXPORT if (target / MANIFEST).is_file() else OTHER


def free_subfolder(folder: Path, name: str) -> Path:
    """``folder / name``, or ``name-2``, ``name-3``… when that is taken: a folder that does not exist."""
    candidate, n = folder / name, 1
    while candidate.exists():
        n += 1
        candidate = folder / f"{name}-{n}"
    return candidate


_REASONS: dict[tuple[int, ...], str] = {
    (errno.EACCES, errno.EPERM):
        "the system does not allow writing there (permission denied). Choose a folder you own, for "
        "example one in your home folder, or get write permission for {denied}",
    (errno.ENOSPC, errno.EDQUOT):
        "the disk holding {parent} is full (or your disk quota is used up). Free some space there, "
        "or choose a folder on another disk",
    (errno.EROFS,):
        "{parent} is on a read-only disk, so nothing can be written there. Choose a folder on a "
        "writable disk",
    (errno.ENAMETOOLONG,):
        "the path is too long for this file system. Choose a shorter folder name, or a folder nearer "
        "the top of the disk",
    (errno.EEXIST, errno.ENOTEMPTY):
        "{name} already exists and is not empty (it may have been created while the files were being "
        "written); nothing in it was replaced. Choose a new folder name, or move that folder away",
    (errno.ENOENT,):
        "{parent} no longer exists (removed, renamed, or its disk unplugged). Choose another folder",
}


def write_error_message(exc: OSError, target: str | Path, what: str) -> str:
    """One sentence for a failed write of ``what`` (e.g. "the distilled set") to ``target``: the folder,
    the reason and the fix. Errors without an errno (the engine's own refusals) keep their text."""
    target = Path(target)
    # the folder the system refused: the target itself when the error names it (it could not be moved
    # aside or written into), else the folder that would hold the export's files and its temporaries
    denied = target if exc.filename is not None and Path(exc.filename) == target else target.parent
    fields = {"name": target.name, "parent": target.parent, "denied": denied}
    for codes, reason in _REASONS.items():
        if exc.errno in codes:
            return f"Could not save {what} to {target}: {reason.format(**fields)}."
    if exc.errno is None:
        return str(exc)
    detail = exc.strerror or str(exc)
    return f"Could not save {what} to {target}: {detail[:1].lower()}{detail[1:]}. Choose another folder."
