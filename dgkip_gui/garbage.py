"""Python's cycle collector runs on the GUI thread only.

CPython runs the cycle collector on whichever thread happens to allocate when a generation's count
passes its threshold, so with automatic collection a job thread (:mod:`dgkip_gui.worker`) collects
too. When the garbage holds Qt objects (a closed dialog or window whose wrappers form a cycle), their
C++ destructors then run on the job thread while the GUI thread may be destroying their relatives:
the job thread held a QObject mutex and waited for the GIL, the GUI thread held the GIL and waited for
that mutex (caught in the GUI tests with py-spy: ``gc_collect_main`` → ``QObject::~QObject`` on the
job thread; the hang that stopped CI for 80 minutes). :func:`collect_on_gui_thread` turns automatic collection off and collects on a GUI
timer instead, generation by generation as CPython would (pyqtgraph's ``GarbageCollector`` does the
same). Reference counting still frees everything that is not in a cycle at once.
"""
from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QTimer

INTERVAL_MS = 250   # how often the GUI thread checks the collector's counts


class _Collector(QObject):
    def __init__(self, parent: QObject | None) -> None:
        super().__init__(parent)
        self._timer = QTimer(self, interval=INTERVAL_MS)
        self._timer.timeout.connect(self.collect)
        self._timer.start()

    @staticmethod
    def collect() -> int:
        """Collect the oldest generation whose count has passed its threshold (if any); the number of
        objects found unreachable."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        if counts[0] <= thresholds[0]:
            return 0
        generation = 2 if counts[2] > thresholds[2] else 1 if counts[1] > thresholds[1] else 0
        return gc.collect(generation)

    def stop(self) -> None:
        self._timer.stop()


_collector: _Collector | None = None


def collect_on_gui_thread() -> None:
    """From now on, collect cycles only on this (the GUI) thread. Idempotent; needs a Qt application."""
    global _collector
    if _collector is None:
        _collector = _Collector(QCoreApplication.instance())
        gc.disable()


def collect_automatically() -> None:
    """Back to CPython's automatic collection (for a process that goes on without its GUI, e.g. tests)."""
    global _collector
    if _collector is not None:
        _collector.stop()
        _collector.deleteLater()
        _collector = None
        gc.enable()


def active() -> bool:
    return _collector is not None
