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
CPython's threshold. Reference counting still frees everything that is not in a cycle at once.
"""
from __future__ import annotations

import gc

from pyqtgraph.util.garbage_collector import GarbageCollector

INTERVAL_S = 0.25   # how often the GUI thread checks the collector's counts

_collector: GarbageCollector | None = None


def collect_on_gui_thread() -> None:
    """From now on, collect cycles only on this (the GUI) thread. Idempotent; needs a Qt application."""
    global _collector
    if _collector is None:
        _collector = GarbageCollector(interval=INTERVAL_S)     # disables automatic collection


def collect_automatically() -> None:
    """Back to CPython's automatic collection (for a process that goes on without its GUI, e.g. tests)."""
    global _collector
    if _collector is not None:
        _collector.timer.stop()
        _collector = None
        gc.enable()


def active() -> bool:
    return _collector is not None
