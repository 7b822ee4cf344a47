"""The sessions' shared base (dgkip_gui.sessions.base): one job at a time, events to the owner's hooks
in order, an exception before the end, controls only for the session whose job runs."""
from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtWidgets import QWidget

from engine.control import RunControl
from dgkip_gui.sessions.base import JobHost, Session, Shell


class Recorder(Session):
    controllable = True

    def __init__(self, host: JobHost, shell: Shell) -> None:
        super().__init__(host, shell)
        self.calls: list[tuple[str, object]] = []

    def on_partial_result(self, event):
        self.calls.append(("event", event))

    def render(self):
        self.calls.append(("render", None))

    def on_exception(self, report):
        self.calls.append(("exception", report.message))

    def on_done(self):
        self.calls.append(("done", self.control))


@pytest.fixture
def host(qtbot):
    parent = QWidget()
    qtbot.addWidget(parent)
    messages: list[str] = []
    shell = Shell(parent, lambda text, ms=0: messages.append(text), lambda report: None, lambda t, q: False)
    jobs = JobHost(parent)
    yield jobs, shell, messages
    assert jobs.abort_and_wait(10)


def test_events_then_exception_then_done_and_one_job_at_a_time(qtbot, host):
    jobs, shell, _ = host
    first, second = Recorder(jobs, shell), Recorder(jobs, shell)
    gate = threading.Event()

    def job(emit):
        emit(1)
        emit(2)
        gate.wait(10)
        raise ValueError("broken input")

    first.start_job(job, "Failed")
    assert jobs.busy and jobs.session is first and first.active and not second.active
    with pytest.raises(RuntimeError):
        second.start_job(lambda emit: None, "Other")
    with qtbot.waitSignal(jobs.changed, timeout=10_000):
        gate.set()
    assert not jobs.busy and jobs.session is None
    kinds = [kind for kind, _ in first.calls]
    assert [value for kind, value in first.calls if kind == "event"] == [1, 2]
    assert kinds.index("exception") < kinds.index("done") == len(kinds) - 1
    assert kinds[-2] == "render"                       # the final redraw comes before the end
    assert ("exception", "broken input") in first.calls and second.calls == []


def test_controls_act_only_on_the_running_session(qtbot, host):
    jobs, shell, messages = host
    running, idle = Recorder(jobs, shell), Recorder(jobs, shell)
    control = running.control = RunControl()
    idle.control = RunControl()

    def job(emit):
        while True:
            control.checkpoint()          # blocks while paused, raises Cancelled once cancelled
            time.sleep(0.01)

    running.start_job(job, "Failed")
    assert jobs.running and jobs.control is control
    idle.stop()
    idle.cancel()
    assert not idle.control.stop_requested and not idle.control.cancelled and messages == []
    running.toggle_pause()
    assert control.paused and messages[-1].startswith("Paused")
    running.toggle_pause()
    assert not control.paused and messages[-1] == "Resumed."
    with qtbot.waitSignal(jobs.changed, timeout=10_000):
        running.cancel()
        assert messages[-1] == "Cancelling…"
    qtbot.waitUntil(lambda: not jobs.busy, timeout=10_000)
    assert running.calls[-1] == ("done", None)          # the control is released before on_done


def test_a_jobs_worker_is_destroyed_on_the_gui_thread(qtbot):
    """The worker QObject is deleted on the GUI thread: deleted on the job's thread, its destructor once
    waited for the GIL while holding Qt's connection mutex, and the GUI thread, holding the GIL, waited
    for that mutex (dgkip_gui.worker._Worker)."""
    import shiboken6
    from PySide6.QtCore import QObject
    from dgkip_gui.worker import Job

    parent = QObject()
    ran_on, destroyed_on = [], []
    job = Job(1, lambda emit: ran_on.append(threading.current_thread()), title="t", parent=parent)
    worker = job._worker
    worker.destroyed.connect(lambda *_: destroyed_on.append(threading.current_thread()))
    with qtbot.waitSignal(job.finished, timeout=10_000):
        job.start()
    qtbot.waitUntil(lambda: not shiboken6.isValid(worker), timeout=5_000)
    assert ran_on and ran_on[0] is not threading.main_thread()
    assert destroyed_on == [threading.main_thread()]
