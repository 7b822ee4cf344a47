"""Logging to a rotating file in the platform's app data folder (and to stderr when there is one).

A windowed PyInstaller build has ``sys.stdout`` and ``sys.stderr`` set to ``None``; logging then
writes to the file only.
"""
from __future__ import annotations

import logging
import logging.handlers
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QMessageLogContext, QStandardPaths, QtMsgType, qInstallMessageHandler

from engine.text import printable

LOG_NAME = "dgkip-studio.log"
_FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"
_state: dict[str, Path | None] = {}


class EscapingFormatter(logging.Formatter):
    """Escapes control characters (folder and class names come from the user's files) so that
    nothing recolours a terminal, and indents every continuation line (tracebacks, multi-line
    reports) so that no text can pass for a record of its own."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record), keep_newlines=True).replace("\n", "\n    ")


def log_dir() -> Path:
    """``QStandardPaths.AppDataLocation``/logs (set the application name first), else a temp folder."""
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or tempfile.gettempdir()) / "logs"


def setup_logging(level: int = logging.INFO) -> Path | None:
    """Attach the file and console handlers to the root logger (once) and return the log file path;
    ``None`` when no folder is writable (the app then runs without a log file)."""
    if "path" in _state:
        return _state["path"]
    root = logging.getLogger()
    root.setLevel(level)
    path: Path | None = log_dir() / LOG_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=1_000_000, backupCount=3, encoding="utf-8")
        handler.setFormatter(EscapingFormatter(_FORMAT))
        root.addHandler(handler)
    except OSError:
        path = None
    if sys.stderr is not None:
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        console.setFormatter(EscapingFormatter(_FORMAT))
        root.addHandler(console)
    logging.captureWarnings(True)
    qInstallMessageHandler(_qt_message)
    _state["path"] = path
    return path


_QT_LEVELS = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
              QtMsgType.QtWarningMsg: logging.WARNING, QtMsgType.QtCriticalMsg: logging.ERROR,
              QtMsgType.QtFatalMsg: logging.CRITICAL}
_QT_NOISE = ("does not support propagateSizeHints",)   # harmless offscreen-platform chatter


def _qt_message(kind: QtMsgType, context: QMessageLogContext, message: str) -> None:
    """Qt's own warnings go to the log file too (and never to a missing stderr)."""
    level = logging.DEBUG if any(n in message for n in _QT_NOISE) else _QT_LEVELS.get(kind, logging.WARNING)
    logging.getLogger("qt").log(level, "%s", message)


def log_path() -> Path | None:
    """The log file set up by :func:`setup_logging` (``None`` before or without one)."""
    return _state.get("path")
