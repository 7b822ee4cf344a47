"""Python's cycle collector runs on the GUI thread only.

CPython runs the cycle collector on whichever thread happens to allocate when a generation's count
passes its threshold, so with automatic collection a job thread (:mod:`dgkip_gui.worker`) collects
too. When the garbage holds Qt objects (a closed dialog or window whose wrappers form a cycle), their
C++ destructors then run on the job thread while the GUI thread may be destroying their relatives:
the job thread held a QObject mutex and waited for the GIL, the GUI thread held the GIL and waited
for that mutex (caught in the GUI tests with py-spy: ``gc_collect_main`` → ``QObject::~QObject`` on
the job thread; the hang that stopped CI for 80 minutes).

:func:`collect_on_gui_thread` installs pyqtgraph's ``GarbageCollector``: automatic collection off,
and every :data:`INTERVAL_S` the GUI thread collects each generation whose count has passed
CPython's threshold (the oldest less often while a job runs). Reference counting still frees
everything that is not in a cycle at once.
"""
from __future__ import annotations

import gc

from pyqtgraph.util.garbage_collector import GarbageCollector

INTERVAL_S = 0.25   # how often the GUI thread checks the collector's counts
FULL_WHILE_BUSY = 10   # while a job runs, the oldest generation waits for this many times its threshold


class _GuiCollector(GarbageCollector):
    """pyqtgraph's collector, except that while a job runs (:func:`job_started`) the oldest generation
    is collected only once its count passes :data:`FULL_WHILE_BUSY` times its threshold. A full
    collection scans every object the process holds, on the GUI thread: in the test suite's grown heap
    one froze the window for 170 ms during a run. With 2 million unfrozen objects (230-280 ms a full
    collection) the sample run's longest stall was 77-108 ms, and 38-47 with this rule (39-54 with a
    small heap). A run's own garbage is young and is collected as before."""

    jobs = 0

    def check(self) -> None:
        l0, l1, l2 = gc.get_count()
        t0, t1, t2 = self.threshold
        if l0 > t0:
            gc.collect(0)
            if l1 > t1:
                gc.collect(1)
                if l2 > (t2 * FULL_WHILE_BUSY if self.jobs else t2):
                    gc.collect(2)


_collector: _GuiCollector | None = None


def collect_on_gui_thread() -> None:
    """From now on, collect cycles only on this (the GUI) thread. Idempotent; needs a Qt application."""
    global _collector
    if _collector is None:
        _collector = _GuiCollector(interval=INTERVAL_S)        # disables automatic collection


def job_started() -> None:
    """A background job began (GUI thread): full collections wait (see :class:`_GuiCollector`)."""
    if _collector is not None:
        _collector.jobs += 1


def job_ended() -> None:
    """A background job ended (GUI thread)."""
    if _collector is not None:
        _collector.jobs = max(0, _collector.jobs - 1)


def collect_automatically() -> None:
    """Back to CPython's automatic collection (for a process that goes on without its GUI, e.g. tests)."""
    global _collector
    if _collector is not None:
        _collector.timer.stop()
        _collector = None
        gc.enable()


def active() -> bool:
    return _collector is not None
