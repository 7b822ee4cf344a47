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
