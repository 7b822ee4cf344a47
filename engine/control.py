"""Stop / pause / cancel requests shared between a consumer (GUI thread, CLI) and an engine iterator.

The engine checks :meth:`RunControl.checkpoint` between steps: it blocks while paused and raises
:class:`Cancelled` after :meth:`cancel`. :meth:`stop` asks for a graceful end (keep results).
"""
from __future__ import annotations

import threading


class Cancelled(Exception):
    """Raised inside an engine iterator when the consumer cancelled the run."""


class RunControl:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self._running = threading.Event()
        self._running.set()

    # consumer side -----------------------------------------------------------
    def stop(self) -> None:
        """Finish the current step, keep results (export stays possible)."""
        self._stop.set()
        self._running.set()

    def cancel(self) -> None:
        """Abandon the run as soon as possible; results are discarded."""
        self._cancel.set()
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    # engine side -------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def checkpoint(self) -> None:
        """Block while paused; raise :class:`Cancelled` if cancelled."""
        while not self._running.wait(0.05):
            pass
        if self._cancel.is_set():
            raise Cancelled()
