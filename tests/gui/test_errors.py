"""Failures anywhere reach the error dialog (with details to copy) and never leave a thread behind."""
from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
from PySide6.QtGui import QGuiApplication

from engine.events import Stage, Step
from dgkip_gui.dialogs import ErrorDialog
from dgkip_gui.errors import ErrorReport, ExceptionRelay, install_excepthooks

from gui_helpers import RUN_TIMEOUT_MS, load, quick, run_to_end

pytestmark = pytest.mark.gui


def failing_run(config, control=None, dataset=None):
    """An injected engine iterator that fails after two steps, on the worker thread."""
    yield Stage("distill")
    for step in (1, 2):
        control.checkpoint()
        yield Step(step, config.steps, 1.0, 1.0, 0.5, 0.5, 10.0, 0.01 * step)
    raise RuntimeError("kernel exploded at step 3")


def test_worker_exception_surfaces_in_error_dialog(qtbot, make_window):
    window = make_window(run_fn=failing_run)
    load(qtbot, window)
    quick(window, steps=50)
    with qtbot.waitSignal(window.error_shown, timeout=RUN_TIMEOUT_MS) as shown, \
            qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.start_run()
    report: ErrorReport = shown.args[0]
    assert finished.args == ["failed"]
    assert "kernel exploded at step 3" in report.message
    dialog = window.error_dialog
    assert dialog is not None and dialog.isVisible() and not dialog.isModal()
    assert "failing_run" in dialog.details.toPlainText()          # the worker's traceback
    assert "torch:" in dialog.details.toPlainText()               # versions for the bug report
    dialog.copy_button.click()
    assert "kernel exploded" in QGuiApplication.clipboard().text()
    assert window.plots.point_count("gap") == 2                    # events before the failure were kept
    assert window.act_run.isEnabled() and not window.running        # usable again


def test_engine_config_error_marks_the_field(qtbot, make_window):
    from engine.config import ConfigError

    def rejecting_run(config, control=None, dataset=None):
        raise ConfigError("lr", "too large for this dataset; try 0.01")
        yield  # pragma: no cover - makes this a generator

    window = make_window(run_fn=rejecting_run)
    load(qtbot, window)
    quick(window)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS), \
            qtbot.waitSignal(window.error_shown, timeout=RUN_TIMEOUT_MS) as shown:
        window.start_run()
    assert window.settings.message.text() == "⚠ Learning rate: too large for this dataset; try 0.01"   # the form's label
    assert shown.args[0].message == "Setting “Learning rate”: too large for this dataset; try 0.01"      # not "lr: …"
    assert "border" in window.settings._fields["lr"].widget.styleSheet()


def test_excepthooks_route_main_and_thread_exceptions_to_the_dialog(qtbot, window, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    relay = ExceptionRelay()
    install_excepthooks(relay)
    relay.raised.connect(window.show_error)

    with qtbot.waitSignal(window.error_shown, timeout=5000) as shown:
        try:
            raise ValueError("main thread trouble")
        except ValueError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    assert "main thread trouble" in shown.args[0].message

    def boom() -> None:
        raise KeyError("thread trouble")

    with qtbot.waitSignal(window.error_shown, timeout=5000) as shown:
        thread = threading.Thread(target=boom, name="helper")
        thread.start()
        thread.join()
    assert "thread trouble" in shown.args[0].message and "helper" in shown.args[0].title


def test_error_dialog_copy_details(qtbot):
    try:
        raise OSError("disk full")
    except OSError as exc:
        report = ErrorReport.from_exception(exc, "Export failed")
    dialog = ErrorDialog(report)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.copy_button.click()
    text = QGuiApplication.clipboard().text()
    assert text.startswith("disk full") and "Traceback" in text and "PySide6:" in text
    assert dialog.copy_button.text() == "Copied"


def test_a_view_failing_on_the_last_events_leaves_the_window_usable(qtbot, make_window, monkeypatch):
    """The results view raising on the Done event reaches the error path, yet the job is over: the
    window is not left 'running' (a quit would ask forever), and the finished result is kept."""
    window = make_window()
    load(qtbot, window)
    quick(window, steps=3)

    def broken(*args, **kwargs):
        raise RuntimeError("the results view broke")

    monkeypatch.setattr(window.results, "show_metrics", broken)
    with qtbot.capture_exceptions() as raised, \
            qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.start_run()
    assert any("the results view broke" in str(exc) for _, exc, _ in raised)
    assert finished.args == ["finished"]
    assert not window.running and window.act_run.isEnabled()
    assert window.result is not None and window.act_export.isEnabled()


def test_a_reopened_export_loads_and_bad_input_reads_as_a_message_not_a_crash(qtbot, window, tmp_path):
    """Opening an export shows its distilled images as a dataset (1 per class, no test split). Distil is
    off on it, saying why; a run started anyway (start_run) is bad input: a warning with the fix up
    front, the traceback folded away, the form usable."""
    load(qtbot, window)
    quick(window, steps=2)
    assert run_to_end(qtbot, window) == "finished"
    out = window.export_result(tmp_path / "export")
    pixels = window.result.pixels()
    load(qtbot, window, out)
    dataset = window.dataset
    assert dataset.name == "export" and dataset.report.train_counts == [1] * 10
    assert not window.act_run.isEnabled() and "no test images" in window.run_panel.blocked.text()
    assert np.array_equal(np.sort(dataset.x_train.reshape(10, -1), 0), np.sort(pixels.reshape(10, -1), 0))

    with qtbot.waitSignal(window.error_shown, timeout=RUN_TIMEOUT_MS) as shown, \
            qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.start_run()
    assert finished.args == ["not started"]
    report = shown.args[0]
    assert report.title == "The distillation could not start" and "no test images" in report.message
    assert "raise holdout_fraction" not in report.message        # one image a class: no hold-out can split it
    dialog = window.error_dialog
    assert not dialog.details.isVisible() and dialog.details_button.text() == "Show details"
    dialog.details_button.click()
    assert dialog.details.isVisible() and "Traceback" in dialog.details.toPlainText()
    assert window.settings.isEnabled() and "Not started" in window.statusBar().currentMessage()
