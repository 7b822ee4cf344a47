"""What the three kinds of background job share: one job at a time per window, started on the
:mod:`dgkip_gui.worker` machinery, its events dispatched to the session that started it.

A :class:`Session` owns one kind of job (loading a dataset, a distillation run, a transfer run): its
state, its :class:`~engine.control.RunControl` and the views it drives, which it is handed at
construction. The window's :class:`JobHost` runs at most one job at a time whichever session asked,
drains the job's coalescing event queue on a repaint timer and calls the owner's hooks, in the manner
of Orange's ``ConcurrentMixin``:

* :meth:`Session.on_partial_result` for every event the job emitted, in order;
* :meth:`Session.render` at most every :data:`VIEW_REFRESH_S` (and once at the end) to redraw;
* :meth:`Session.on_exception` when the job raised (:class:`engine.control.Cancelled` is no failure);
* :meth:`Session.on_done` once the job's thread has stopped, after its last event, whatever the outcome.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication, QWidget

from engine.control import RunControl
from dgkip_gui.errors import ErrorReport
from dgkip_gui import garbage
from dgkip_gui.warmup import settle_heap
from dgkip_gui.worker import JobFn, Job

REFRESH_MS = 100         # period of the repaint timer while a job runs: drain events, phase changes
VIEW_REFRESH_S = 0.25    # plots, image grid and progress redraw at most this often: painting holds the
                         # GIL, and every millisecond of it is taken from the engine thread


@dataclass(frozen=True)
class Shell:
    """What a session may ask of the window around it."""
    window: QWidget                              # the parent of the dialogs a session opens
    status: Callable[..., None]                  # the status bar's showMessage(text, ms=0)
    show_error: Callable[[ErrorReport], None]    # the error dialog
    confirm: Callable[[str, str], bool]          # a Yes/No question (title, text), default No
    # a question with named answers (title, text, answers): the chosen answer; the first is the
    # default, the last answers Escape (and is what a shell without the dialog gives)
    choose: Callable[[str, str, tuple[str, ...]], str] = lambda title, text, answers: answers[-1]


class JobHost(QObject):
    """The window's one background job at a time, whichever session started it.

    ``changed`` fires when a job starts, after a control request, and when a job has ended (after the
    owner's :meth:`Session.on_done`), so the window can update its actions.
    """
    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._job: Job | None = None
        self._owner: Session | None = None
        self._count = 0
        self._rendered_at = 0.0
        self._timer = QTimer(self, interval=REFRESH_MS)
        self._timer.timeout.connect(self.drain)

    @property
    def busy(self) -> bool:
        """A job (of any session) is in progress."""
        return self._job is not None

    @property
    def session(self) -> Session | None:
        """The session whose job is in progress."""
        return self._owner if self._job is not None else None

    @property
    def running(self) -> bool:
        """A job that pause, stop and cancel apply to is in progress."""
        return self.session is not None and self.session.controllable

    @property
    def control(self) -> RunControl | None:
        """The running job's control, if it has one."""
        return self.session.control if self.session is not None else None

    def start(self, session: Session, job: JobFn, title: str) -> None:
        """Run ``job(emit)`` on a worker thread for ``session`` (``title``: the heading of its error report)."""
        if self._job is not None:
            raise RuntimeError("a job is already running")
        self._count += 1
        self._owner = session
        self._job = Job(self._count, job, title=title, latest_only=session.latest_only, parent=self)
        self._job.failed.connect(self._failed)
        self._job.finished.connect(self._finished)
        garbage.job_started()
        self._job.start()
        self._timer.start()
        self.changed.emit()

    def drain(self, final: bool = False) -> None:
        """Repaint tick: hand the job's queued events to its session, then let it redraw (throttled)."""
        if self._job is None or self._owner is None:
            return
        owner = self._owner
        for event in self._job.queue.drain():
            owner.on_partial_result(event)
        now = time.monotonic()
        if final or now - self._rendered_at >= VIEW_REFRESH_S:
            self._rendered_at = now
            owner.render()

    def cancel(self) -> None:
        """Ask the running job to stop at its next checkpoint (nothing kept)."""
        if self.control is not None:
            self.control.cancel()

    def abort_and_wait(self, timeout_s: float = 30.0) -> bool:
        """Cancel any job and run the event loop until its thread has ended; True when it has."""
        self.cancel()
        deadline = time.monotonic() + timeout_s
        while self._job is not None and time.monotonic() < deadline:
            self._job.wait(20)
            QApplication.processEvents()
        return self._job is None

    def shut_down(self) -> None:
        self._timer.stop()

    def _failed(self, job_id: int, report: ErrorReport) -> None:
        if self._job is None or self._owner is None or job_id != self._job.id:
            return  # stale
        self._owner.on_exception(report)

    def _finished(self, job_id: int) -> None:
        if self._job is None or self._owner is None or job_id != self._job.id:
            return
        try:
            self.drain(final=True)
        finally:                  # a view that fails on the last events must not leave the job "running"
            job, owner = self._job, self._owner
            self._job, self._owner = None, None
            job.deleteLater()
            self._timer.stop()
            owner.control = None
            garbage.job_ended()
            owner.on_done()
            settle_heap()         # after the first job that warmed the engine up (GUI thread only)
            self.changed.emit()


class Session(QObject):
    """One kind of background job with its own state and views; subclasses implement the hooks."""
    latest_only: tuple[type, ...] = ()   # event types coalesced to the newest (see worker.EventQueue)
    controllable = False                 # pause, stop and cancel apply while its job runs
    stop_unit = "step"                   # what Stop lets finish first
    noun = ""                            # "A distillation": how the quit question names a running job

    def __init__(self, host: JobHost, shell: Shell) -> None:
        super().__init__(host)
        self.host, self.shell = host, shell
        self.control: RunControl | None = None

    @property
    def active(self) -> bool:
        """This session's job is in progress."""
        return self.host.session is self

    def start_job(self, job: JobFn, title: str) -> None:
        """Run ``job(emit)`` on a worker thread; its events and end come back through the hooks.
        Set :attr:`control` first when the job checks one."""
        self.host.start(self, job, title)

    # -------------------------------------------------------------- hooks
    def on_partial_result(self, event: Any) -> None:
        """One event of the running job, in the order emitted (coalesced types last)."""
        raise NotImplementedError

    def render(self) -> None:
        """Redraw what the drained events changed (throttled by the host)."""

    def on_exception(self, report: ErrorReport) -> None:
        """The job raised; :meth:`on_done` still follows."""
        self.shell.show_error(report)

    def on_done(self) -> None:
        """The job's thread has stopped and every event was handled."""
        raise NotImplementedError

    # -------------------------------------------------------------- controls
    def _controlled(self) -> RunControl | None:
        """The control that pause, stop and cancel act on: only while this session's job runs."""
        return self.control if self.controllable and self.active else None

    def toggle_pause(self) -> None:
        control = self._controlled()
        if control is None:
            return
        if control.paused:
            control.resume()
            self.shell.status("Resumed.", 3000)
        else:
            control.pause()
            self.shell.status("Paused: press Space or Resume to continue.")
        self.host.changed.emit()
        self.host.drain(final=True)

    def stop(self) -> None:
        """Let the current step (or seed) finish and keep what was done."""
        control = self._controlled()
        if control is not None:
            control.stop()
            self.shell.status(self.stop_message())
            self.host.changed.emit()

    def stop_message(self) -> str:
        """The status line when Stop is pressed: what finishes first."""
        return f"Stopping after the current {self.stop_unit}…"

    def cancel(self) -> None:
        """Abandon the job; nothing is kept."""
        control = self._controlled()
        if control is not None:
            control.cancel()
            self.shell.status("Cancelling…")
            self.host.changed.emit()
