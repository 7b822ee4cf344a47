"""The output location of an export: checked before any work, locked while written, tidied after a
killed process, and a recovery folder when the target fails at the last moment.

- :func:`check_target_location` runs before a run starts (the CLI: before the dataset is even read):
  the target is new, empty or a replaceable export; the nearest existing folder above it is a
  writable folder; every name fits the file system; the disk has room for the estimated export.
- :class:`TargetLock` serialises exports to one target across processes (``flock`` on a hidden
  ``.<name>.lock`` beside it): a second export at the same time gets a clear message at once.
- Temporary folders are named ``.<name>.<pid>.<token>.partial`` (a replaced export waits as
  ``.<name>.<token>.old``); :func:`tidy_leftovers` removes the ones a killed process left, and puts
  back an earlier export whose replacement was interrupted.
- :func:`recovery_candidates` lists where a result goes when its target cannot take it: beside the
  target, else the app's data folder (:func:`app_data_dir`, the folder Qt's ``AppDataLocation``
  names, computed here without Qt).

Everything created here honours the umask, like any other file the user creates.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from engine.text import printable

ORG_NAME, APP_NAME = "DGKIP", "DGKIP Studio"      # as dgkip_gui sets them (QStandardPaths folder)
NAME_MAX_BYTES = 255                                 # longest file name on every common file system
SPACE_MARGIN_BYTES = 16 * 2**20                      # kept free beyond the estimate
PARTIAL, OLD, LOCK = ".partial", ".old", ".lock"
MANIFEST, ARRAYS = "manifest.json", "distilled.npz"  # an export's manifest and arrays (engine.export)


class ExportError(OSError):
    """The export cannot be written where asked; ``str()`` names the path and the fix."""

    def __init__(self, path: str | os.PathLike, message: str, fix: str, errno_: int | None = None) -> None:
        self.path, self.message, self.fix = printable(os.fspath(path)), message, fix
        super().__init__(errno_ or 0, f"{self.path}: {message} — {fix}")

    def __str__(self) -> str:
        return f"{self.path}: {self.message} — {self.fix}"


def app_data_dir() -> Path:
    """The app's data folder (``$DGKIP_DATA_DIR`` if set): on Linux ``$XDG_DATA_HOME`` or
    ``~/.local/share``, on macOS ``~/Library/Application Support``, on Windows ``%APPDATA%``; then
    ``DGKIP/DGKIP Studio``."""
    if os.environ.get("DGKIP_DATA_DIR"):
        return Path(os.environ["DGKIP_DATA_DIR"])
    home = Path.home()
    if sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    elif os.name == "nt":
        base = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / ORG_NAME / APP_NAME


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (links followed)."""
    while not os.path.exists(path) and path.parent != path:
        path = path.parent
    return path


def _check_names(target: Path) -> None:
    for part in target.parts:
        if len(os.fsencode(part)) > NAME_MAX_BYTES:
            raise ExportError(target, f"the name {printable(part[:40])}… is {len(os.fsencode(part))} bytes, longer "
                              f"than file systems allow ({NAME_MAX_BYTES})", "choose a shorter folder name",
                              errno.ENAMETOOLONG)


def _probe_writable(folder: Path) -> None:
    """Create and remove a hidden folder in ``folder``: the one test that holds for root, ACLs,
    read-only mounts and network file systems alike."""
    try:
        probe = tempfile.mkdtemp(prefix=".dgkip-probe-", dir=folder)
        os.rmdir(probe)
    except OSError as exc:
        raise ExportError(folder, f"cannot be written ({exc.strerror or exc})",
                          "choose a folder you may write to, or fix its permissions", exc.errno) from exc


def is_export(folder: Path, manifest: str = MANIFEST) -> bool:
    return (folder / manifest).is_file()


def target_state(target: Path, overwrite: bool) -> bool:
    """Whether ``target`` holds something that will be replaced; raise ``FileExistsError`` if it must
    not be (a file, a non-empty folder without ``overwrite``, or a folder that is not an export)."""
    if not os.path.lexists(target):
        return False
    if not target.is_dir():
        raise FileExistsError(f"{printable(target)} is a file — choose a folder name for the export")
    try:
        empty = not any(target.iterdir())
    except OSError as exc:
        raise ExportError(target, f"cannot be listed ({exc.strerror})", "choose another folder") from exc
    if empty:
        return True
    if not is_export(target):       # never replaced: offering --overwrite would only lead to this refusal
        raise FileExistsError(f"{printable(target)} already exists and is not empty; it is not a distilled-set "
                              "export (no manifest.json), so it is never replaced — choose a new folder name")
    if not overwrite:
        raise FileExistsError(f"{printable(target)} already exists — choose a new folder name, or confirm "
                              "replacing it (overwrite=True, --overwrite)")
    return True


def check_target_name(target: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """The checks of :func:`check_target_location` that concern ``target`` itself (its name and what is
    there now), not the folder it goes into; returns the absolute path."""
    if "\0" in os.fspath(target):
        raise ExportError(repr(os.fspath(target)), "contains a NUL character", "choose another folder name")
    target = Path(os.path.abspath(target))
    _check_names(target)
    target_state(target, overwrite)
    return target


def check_target_location(target: str | os.PathLike, *, overwrite: bool = False,
                          needed_bytes: int = 0) -> list[str]:
    """Everything that can be known about ``target`` before a run: see the module docstring.
    Raises ``FileExistsError`` or :class:`ExportError`; returns notes to show (leftovers found)."""
    target = check_target_name(target, overwrite=overwrite)
    base = _nearest_existing(target.parent)
    if not base.is_dir():
        raise ExportError(target, f"{printable(base)} is a file, so no folder can be created below it",
                          "choose a folder that is not inside a file", errno.ENOTDIR)
    _probe_writable(base)
    free = shutil.disk_usage(base).free
    if needed_bytes and free < needed_bytes + SPACE_MARGIN_BYTES:
        raise ExportError(base, f"has {free / 2**20:,.1f} MiB free, the export needs about "
                          f"{(needed_bytes + SPACE_MARGIN_BYTES) / 2**20:,.1f} MiB",
                          "free some space or choose a folder on another disk", errno.ENOSPC)
    found = leftovers(target) if target.parent.is_dir() else []
    return [f"{len(found)} hidden temporary folder{'s' if len(found) > 1 else ''} from an interrupted export "
            f"to {printable(target.name)} found beside it (e.g. {printable(found[0].name)}); the export will "
            "tidy them"] if found else []


def leftovers(target: Path) -> list[Path]:
    """Temporary folders of exports to ``target`` left beside it (``.partial`` and ``.old``)."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\..+(?:{re.escape(PARTIAL)}|{re.escape(OLD)})$")
    try:
        with os.scandir(target.parent) as it:
            return sorted(Path(e.path) for e in it if pattern.match(e.name) and e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def tidy_leftovers(target: Path) -> list[str]:
    """Under the target's lock (no other export to it is running): remove ``.partial`` folders, put an
    interrupted replacement's ``.old`` export back when the target is missing, remove other ``.old``
    folders. Returns what was done, one line each."""
    notes = []
    for path in leftovers(target):
        if path.name.endswith(OLD) and not os.path.lexists(target) and is_export(path):
            os.rename(path, target)
            notes.append(f"restored the earlier export {printable(target)} from {printable(path.name)} "
                         "(an earlier replacement was interrupted)")
            continue
        shutil.rmtree(path, ignore_errors=True)
        notes.append(f"removed {printable(path.name)}, left by an interrupted export")
    return notes


def make_temp_dir(target: Path, suffix: str = PARTIAL) -> Path:
    """A new hidden folder beside ``target`` named for it and this process; mode 0777 less the umask."""
    for _ in range(100):
        path = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unique temporary folder name", str(target.parent))


def old_name(target: Path) -> Path:
    return target.parent / f".{target.name}.{secrets.token_hex(4)}{OLD}"


class TargetLock:
    """An exclusive, non-blocking lock on exports to ``target`` (released when the process dies).
    Entering raises :class:`ExportError` when another export to ``target`` holds it."""

    def __init__(self, target: Path) -> None:
        self.path = target.parent / f".{target.name}{LOCK}"
        self.target = target
        self._fd: int | None = None

    def __enter__(self) -> "TargetLock":
        try:
            import fcntl
        except ImportError:         # Windows: no advisory locks; the rename itself still refuses
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ExportError(self.target, "another export to this folder is running right now",
                                  "wait for it to finish, or choose another folder name", errno.EBUSY) from None
            try:                    # the holder before us may have removed the file: lock the current one
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return self
            os.close(fd)

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None


def recovery_candidates(target: Path, now: datetime | None = None) -> list[Path]:
    """Where a result goes when ``target`` cannot take it, in order: beside the target (a visible
    ``<name>.recovered-<time>``), then the app data folder's ``recovered/``."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    name = f"{target.name[:NAME_MAX_BYTES // 4 - 30] or 'export'}.recovered-{stamp}"
    return [target.parent / name, app_data_dir() / "recovered" / name]
