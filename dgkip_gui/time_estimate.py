"""The run estimate's time, off the GUI thread.

The memory estimate is immediate and shown at once; the time hint measures a few real steps first
(:mod:`engine.plan.time`, 0.05–5 s the first time a setting is seen), so :class:`TimeEstimator` asks
for it on a background thread and hands the finished estimate back through :attr:`ready`. A newer
request replaces an older one (its answer is dropped), and :meth:`cancel` abandons the measurement
(the window calls it before a run starts, so the two never share the CPU or torch's thread setting).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from engine.plan import time as step_timing
from engine.config import DistillConfig
from engine.control import Cancelled
from engine.plan import RunEstimate, estimate_run

log = logging.getLogger(__name__)


class TimeEstimator(QObject):
    """``request(config, report)`` → ``ready(config, estimate)`` with ``seconds_hint`` set, unless superseded."""

    ready = Signal(object, object)  # the latest request's DistillConfig and its RunEstimate

    # The background thread makes no Qt call: it leaves its answer under a lock and the GUI thread
    # collects it on a timer. A Qt call from Python off the GUI thread holds the GIL while it takes Qt's
    # mutexes, and the GUI thread can hold one of them while it waits for the GIL (dgkip_gui.worker).
    POLL_MS = 25

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._answer: tuple[int, DistillConfig, RunEstimate] | None = None
        self._poll = QTimer(self)
        self._poll.setInterval(self.POLL_MS)
        self._poll.timeout.connect(self._collect)

    def request(self, config: DistillConfig, report: Any) -> None:
        self._generation += 1
        generation = self._generation
        step_timing.cancel()                       # an older request's probe is of no use now
        thread = threading.Thread(target=self._work, args=(generation, step_timing.epoch(), config, report), daemon=True,
                                  name="dgkip-time-estimate")
        self._thread = thread
        thread.start()
        self._poll.start()

    def cancel(self, wait_s: float = 5.0) -> None:
        """Drop pending answers and stop the measurement. Waits (up to ``wait_s``) only while a probe
        runs, until its current step ends; a request that has not reached its probe never starts it
        (:func:`engine.plan.time.requested_at`), so the GUI thread does not wait for it."""
        self._generation += 1
        step_timing.cancel()
        deadline = time.monotonic() + wait_s
        while step_timing.running() and self.busy and time.monotonic() < deadline:
            self._thread.join(0.005)

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _work(self, generation: int, epoch: int, config: DistillConfig, report: Any) -> None:
        if generation != self._generation:
            return
        try:
            with step_timing.requested_at(epoch):
                estimate: RunEstimate = estimate_run(config, report)
        except Cancelled:
            return
        except Exception as exc:  # noqa: BLE001 - a time hint must never break the form
            log.warning("time estimate failed: %s", exc)
            return
        if generation == self._generation:
            with self._lock:
                self._answer = (generation, config, estimate)

    def _collect(self) -> None:
        """On the GUI thread: emit ``ready`` for a finished answer to the latest request; stop polling
        once no thread runs and nothing is left to collect."""
        with self._lock:
            answer, self._answer = self._answer, None
        if answer is not None and answer[0] == self._generation:
            self.ready.emit(answer[1], answer[2])
        if not self.busy:
            with self._lock:
                if self._answer is None:
                    self._poll.stop()
