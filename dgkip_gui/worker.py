"""Background jobs: one QThread per job, which runs the job in ``run`` and ends.

A job is a callable ``job(emit)`` that runs on the job's thread and passes its events to ``emit``.
Events go into a thread-safe :class:`EventQueue` that the GUI drains on a timer (so a fast engine
never floods the GUI event loop); only the end of the job travels as signals, emitted on the GUI
thread once the job's thread has ended: ``failed`` for an exception, then always ``finished``.
:class:`engine.control.Cancelled` is a normal end, not a failure.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.control import Cancelled
from dgkip_gui.errors import ErrorReport, is_expected

log = logging.getLogger(__name__)

Emit = Callable[[Any], None]
JobFn = Callable[[Emit], None]

_live_threads: set[QThread] = set()


def running_threads() -> int:
    """How many job threads are still running (tests assert this is 0 after each test)."""
    return sum(1 for thread in _live_threads if thread.isRunning())


class EventQueue:
    """Thread-safe hand-over of events from the worker to the GUI thread.

    Events of the ``latest_only`` types are coalesced: a drain returns only the newest one (after
    the other events), so a slow GUI never redraws stale image snapshots.
    """

    def __init__(self, latest_only: tuple[type, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._events: list[Any] = []
        self._latest: dict[type, Any] = {}
        self._latest_only = latest_only

    def put(self, event: Any) -> None:
        with self._lock:
            if isinstance(event, self._latest_only):
                self._latest[type(event)] = event
            else:
                self._events.append(event)

    def drain(self) -> list[Any]:
        """All pending events in order, then the newest of each coalesced type."""
        with self._lock:
            events, self._events = self._events, []
            latest, self._latest = self._latest, {}
        return events + list(latest.values())


class _JobThread(QThread):
    """One job run in :meth:`run` (no event loop), then the thread ends; a failure is kept in
    ``report`` for the GUI thread to read after ``finished``.

    The job's thread makes no Qt call: it ends by returning from ``run``, and QThread emits
    ``finished`` from C++ after PySide has released the GIL. A Qt call made from Python on this
    thread holds the GIL while it takes Qt's mutexes, and the GUI thread can hold one of those
    mutexes while it waits for the GIL (PySide looks up Python overrides inside ``~QObject``): both
    threads hung, twice in runs of the test suite. Once a worker QObject was destroyed here
    (``deleteLater``); then, once in 9 suite runs, the same worker moving itself back to the GUI
    thread (``moveToThread``) while the GUI thread destroyed an earlier window's widgets."""

    def __init__(self, job_id: int, job: JobFn, queue: EventQueue, title: str, parent: QObject) -> None:
        super().__init__(parent)
        self._job_id, self._job, self._queue, self._title = job_id, job, queue, title
        self.report: ErrorReport | None = None

    def run(self) -> None:
        try:
            self._job(self._queue.put)
        except Cancelled:
            log.info("job %d cancelled", self._job_id)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the GUI
            if is_expected(exc):
                log.warning("job %d: %s", self._job_id, exc)
            else:
                log.exception("job %d failed", self._job_id)
            self.report = ErrorReport.from_exception(exc, self._title)


class Job(QObject):
    """GUI-side handle of one background job: start it, drain its events, learn when it ended.

    ``failed(job_id, report)`` and ``finished(job_id)`` arrive on the GUI thread; ``finished`` comes
    after the thread has fully stopped and after every event was queued. The QThread is a child of
    the Job (C++-owned, so ``deleteLater`` is the only deletion); give the Job a parent and
    ``deleteLater`` it after ``finished``.
    """
    failed = Signal(int, object)
    finished = Signal(int)

    def __init__(self, job_id: int, job: JobFn, *, title: str, latest_only: tuple[type, ...] = (),
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.id = job_id
        self.queue = EventQueue(latest_only)
        self._running = False
        self._thread = _JobThread(job_id, job, self.queue, title, self)
        self._thread.setObjectName(f"job-{job_id}")
        self._thread.finished.connect(self._on_thread_finished)          # queued: on the GUI thread
        self._thread.finished.connect(self._thread.deleteLater)

    def start(self) -> None:
        self._running = True
        _live_threads.add(self._thread)
        self._thread.start()

    def wait(self, ms: int) -> bool:
        """Block up to ``ms`` for the thread to stop (``finished`` still arrives through the event loop)."""
        return not self._running or self._thread.wait(ms)

    @Slot()
    def _on_thread_finished(self) -> None:
        self._thread.wait()   # fully stopped
        _live_threads.discard(self._thread)
        self._running = False
        if self._thread.report is not None:
            self.failed.emit(self.id, self._thread.report)
        self.finished.emit(self.id)
