"""The estimate's time hint is measured off the GUI thread: the memory line appears at once, the time
follows, and starting a run abandons a measurement still going."""
from __future__ import annotations

import time

import pytest

import engine.plan.time as step_timing

from gui_helpers import RUN_TIMEOUT_MS, load

pytestmark = pytest.mark.gui


def test_time_hint_arrives_from_the_background_and_a_run_cancels_it(qtbot, window, monkeypatch):
    monkeypatch.setattr(step_timing, "_MEASURED", {})
    load(qtbot, window)
    settings = window.settings
    line = settings.estimate.line
    def timed() -> bool:
        return settings.estimate.estimate is not None and settings.estimate.estimate.seconds_hint is not None
    qtbot.waitUntil(timed, timeout=30_000)
    assert "about" in line.text() or "under a second" in line.text()
    assert settings.estimate.estimate.seconds_hint > 0

    # an edit shows the memory line at once (no time yet), then the measured time for the new setting
    started = time.perf_counter()
    settings._fields["ipc"].widget.setValue(7)
    settings.update_estimate()
    assert time.perf_counter() - started < 1.0                     # the GUI thread did not measure steps
    assert settings.estimate.estimate.seconds_hint is None
    qtbot.waitUntil(timed, timeout=30_000)

    # a probe still running when Distil is pressed is cancelled before the run starts
    monkeypatch.setattr(step_timing, "STEPS", 100_000)
    monkeypatch.setattr(step_timing, "MIN_STEPS", 100_000)
    settings._fields["ipc"].widget.setValue(2)
    settings.update_estimate()
    qtbot.waitUntil(lambda: step_timing._ACTIVE is not None, timeout=30_000)
    assert window.start_run()
    assert not settings.time_estimator.busy
    qtbot.waitUntil(lambda: not window.running, timeout=RUN_TIMEOUT_MS)
    assert window.result is not None


def test_estimate_thread_hands_over_without_a_qt_call(qtbot, monkeypatch):
    """The measuring thread leaves its answer under a lock; the GUI thread emits ``ready`` from a timer
    (a Qt call from the measuring thread could deadlock against the GUI thread: dgkip_gui.worker).
    Only the latest request's answer is emitted."""
    import threading
    from PySide6.QtCore import QObject
    import dgkip_gui.time_estimate as te
    from engine.config import DistillConfig

    release = threading.Event()
    measured_on = []

    def fake_estimate(config, report):
        measured_on.append(threading.current_thread())
        release.wait(10)
        return f"estimate of ipc {config.ipc}"

    monkeypatch.setattr(te, "estimate_run", fake_estimate)
    parent = QObject()
    estimator = te.TimeEstimator(parent)
    got = []
    estimator.ready.connect(lambda config, estimate: got.append((config.ipc, estimate, threading.current_thread())))
    estimator.request(DistillConfig(ipc=1), None)
    estimator.request(DistillConfig(ipc=2), None)            # supersedes the first
    release.set()
    qtbot.waitUntil(lambda: bool(got) and not estimator.busy, timeout=10_000)
    qtbot.wait(3 * te.TimeEstimator.POLL_MS)
    assert got == [(2, "estimate of ipc 2", threading.main_thread())]
    assert measured_on and threading.main_thread() not in measured_on
    qtbot.waitUntil(lambda: not estimator._poll.isActive(), timeout=2_000)   # polling stops when done
