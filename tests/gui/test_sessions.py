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


def test_a_job_runs_off_the_gui_thread_and_its_thread_makes_no_qt_call(qtbot, monkeypatch):
    """The job runs in the QThread's own ``run`` and the thread ends by returning: no Qt call is made
    on the job's thread while it holds the GIL. Such calls deadlocked against the GUI thread twice
    (dgkip_gui.worker._JobThread): a worker QObject deleted there, and moved back to the GUI thread
    from there. Every QObject method called here on the job's thread is recorded; failures still
    arrive, on the GUI thread, before ``finished``."""
    from PySide6.QtCore import QObject
    from dgkip_gui.worker import Job

    calls = []
    for name in ("moveToThread", "deleteLater", "setParent", "thread", "startTimer", "disconnect"):
        real = getattr(QObject, name)
        monkeypatch.setattr(QObject, name, lambda self, *a, _real=real, _name=name, **k: (
            calls.append((_name, threading.current_thread())), _real(self, *a, **k))[1])
    parent = QObject()
    ran_on, failed = [], []

    def job(emit):
        ran_on.append(threading.current_thread())
        emit("event")
        raise ValueError("the job's own failure")

    job_ = Job(1, job, title="t", parent=parent)
    order = []
    job_.failed.connect(lambda i, report: (failed.append((report, threading.current_thread())), order.append("failed")))
    job_.finished.connect(lambda i: order.append(("finished", threading.current_thread())))
    with qtbot.waitSignal(job_.finished, timeout=10_000):
        job_.start()
    assert ran_on and ran_on[0] is not threading.main_thread()
    assert not [c for c in calls if c[1] is ran_on[0]]
    assert order == ["failed", ("finished", threading.main_thread())]
    assert failed[0][1] is threading.main_thread() and "own failure" in str(failed[0][0].message)
    assert job_.queue.drain() == ["event"]
