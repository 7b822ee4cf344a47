"""Ctrl-C for the command line: the first asks the work to wind down, the second aborts."""
from __future__ import annotations

import signal
import threading


class FirstInterruptWindsDown:
    """A SIGINT handler for the duration of a ``with`` block, installed only on the main thread: the
    first Ctrl-C calls :meth:`first` (subclasses say what winding down means), the second raises
    ``KeyboardInterrupt``. ``count`` is how many arrived."""

    def __init__(self) -> None:
        self.count = 0
        self._previous = None

    def first(self) -> None:
        raise NotImplementedError

    def __call__(self, signum, frame) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt
        self.first()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
