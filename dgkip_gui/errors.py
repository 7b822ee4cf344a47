"""Error reports and the process-wide exception hooks.

Every failure (a worker's exception, an uncaught exception in a slot, an exception in a Python
thread) becomes an :class:`ErrorReport` that the main window shows in the error dialog.
"""
from __future__ import annotations

import logging
import sys
import threading
import traceback
from dataclasses import dataclass, field
from types import TracebackType

from PySide6.QtCore import QObject, Signal

from engine.config import ConfigError, field_label
from engine.data.report import DatasetError
from engine.operators import ResourceError

log = logging.getLogger(__name__)

EXPECTED_ERRORS = (ConfigError, DatasetError, ResourceError, OSError)
"""Bad input or an environment limit (an invalid setting, an unreadable dataset, a run over the memory
budget, a folder that cannot be written): explained to the user, logged at WARNING without traceback."""


def is_expected(exc: BaseException | None) -> bool:
    return isinstance(exc, EXPECTED_ERRORS)


@dataclass(frozen=True)
class ErrorReport:
    """What the error dialog shows: a title, a one-paragraph message and copyable details.
    ``exception`` is the original exception, so callers can treat expected errors (bad input) apart."""
    title: str
    message: str
    details: str
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_exception(cls, exc: BaseException, title: str = "Something went wrong",
                       message: str | None = None) -> "ErrorReport":
        """Build a report whose details hold the traceback and the software versions; ``message``
        replaces the exception's own text up front (the details keep it)."""
        from dgkip_gui.system_info import versions_text

        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if message is not None:
            return cls(title, message, f"{trace}\n{versions_text()}", exc)
        message = str(exc) or type(exc).__name__
        if isinstance(exc, ConfigError):
            message = f"Setting “{field_label(exc.field)}”: {exc.reason}"
        elif isinstance(exc, MemoryError):
            message = f"Not enough memory: {message}. Lower IPC, the image size or the memory budget."
        return cls(title, message, f"{trace}\n{versions_text()}", exc)


class ExceptionRelay(QObject):
    """Carries reports from any thread to the GUI thread (the relay must live on the GUI thread)."""
    raised = Signal(object)  # ErrorReport


def install_excepthooks(relay: ExceptionRelay) -> None:
    """Route uncaught exceptions of the main thread and of Python threads to ``relay`` (and the log)."""

    def report(exc_type: type[BaseException], exc: BaseException | None, tb: TracebackType | None,
               where: str) -> None:
        if exc is None:
            return
        log.error("uncaught exception in %s", where, exc_info=(exc_type, exc, tb))
        relay.raised.emit(ErrorReport.from_exception(exc, f"Unexpected error ({where})"))

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        report(exc_type, exc, tb, "main thread")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "thread"
        report(args.exc_type, args.exc_value, args.exc_traceback, name)

    sys.excepthook = hook
    threading.excepthook = thread_hook
