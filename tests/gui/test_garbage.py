"""Cycles are collected on the GUI thread only, never on a job thread (dgkip_gui.garbage): a job thread
that collects may destroy Qt objects there and deadlock with the GUI thread."""
from __future__ import annotations

import gc
import threading
import weakref

import pytest

from dgkip_gui import garbage

pytestmark = pytest.mark.gui


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_cycles_are_collected_on_the_gui_thread_not_by_an_allocating_job_thread(qtbot, window):
    assert garbage.active() and not gc.isenabled()
    collected_on: list[str] = []
    cycle = Cycle()
    probe = weakref.ref(cycle, lambda _: collected_on.append(threading.current_thread().name))
    del cycle

    def allocate() -> None:   # far past every generation's threshold: automatic collection would run here
        for _ in range(20 * gc.get_threshold()[0] * gc.get_threshold()[1]):
            Cycle()
    worker = threading.Thread(target=allocate, name="job")
    worker.start()
    worker.join()
    assert collected_on == [] and probe() is not None

    qtbot.waitUntil(lambda: probe() is None, timeout=5_000)
    assert collected_on == [threading.main_thread().name]


def test_automatic_collection_comes_back_without_a_window():
    garbage.collect_automatically()
    assert gc.isenabled() and not garbage.active()


def test_full_collections_wait_while_a_job_runs(qtbot, window, monkeypatch):
    """While a job runs, the oldest generation waits for FULL_WHILE_BUSY times its threshold (a full
    collection on the GUI thread froze the window for 170 ms during a run); young ones as before."""
    collector = garbage._collector
    t0, t1, t2 = collector.threshold
    calls: list[int] = []
    counts = [(t0 + 1, t1 + 1, t2 + 1)]
    monkeypatch.setattr(garbage.gc, "get_count", lambda: counts[0])
    monkeypatch.setattr(garbage.gc, "collect", lambda generation=2: calls.append(generation) or 0)
    window.load_dataset("sample")                       # a job: the window's host marks it running
    assert collector.jobs == 1
    collector.check()
    assert calls == [0, 1]                              # the oldest generation waits
    calls.clear()
    counts[0] = (t0 + 1, t1 + 1, garbage.FULL_WHILE_BUSY * t2 + 1)
    collector.check()
    assert calls == [0, 1, 2]                           # until its count is far past the threshold
    monkeypatch.undo()
    qtbot.waitUntil(lambda: window.dataset is not None and not window.busy, timeout=60_000)
    assert collector.jobs == 0
    calls.clear()
    monkeypatch.setattr(garbage.gc, "get_count", lambda: (t0 + 1, t1 + 1, t2 + 1))
    monkeypatch.setattr(garbage.gc, "collect", lambda generation=2: calls.append(generation) or 0)
    collector.check()
    assert calls == [0, 1, 2]                           # no job: CPython's thresholds
