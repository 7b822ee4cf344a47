"""A run the estimate refuses is not a failure: Distil is off with the reason beside it, the form does
not jump, and the estimate's alternatives are buttons that change the form visibly (and can be undone)."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt

from engine import ResourceError
from engine.events import Stage

from gui_helpers import RUN_TIMEOUT_MS, load

pytestmark = pytest.mark.gui


def refuse(qtbot, window, budget_gb: str = "0.001"):
    window.left_tabs.setCurrentIndex(1)
    window.settings.advanced_toggle.setChecked(True)
    edit = window.settings._fields["memory_budget_gb"].widget
    edit.clear()
    qtbot.keyClicks(edit, budget_gb)
    qtbot.waitUntil(lambda: window.settings.refusal is not None, timeout=5_000)


def test_refused_run_turns_distil_off_with_the_reason_beside_it(qtbot, window):
    load(qtbot, window)
    window.left_tabs.setCurrentIndex(1)
    view = window.settings.estimate
    qtbot.waitUntil(view.isVisible, timeout=5_000)
    loss = window.settings._fields["loss"].widget
    top_before = loss.mapTo(window, QPoint(0, 0)).y()
    assert window.act_run.isEnabled() and not window.run_panel.blocked.isVisible()

    refuse(qtbot, window)
    assert not window.act_run.isEnabled()
    assert not window.run_panel.buttons["run"].isEnabled()
    reason = window.run_panel.blocked
    assert reason.isVisible() and not window.run_panel.info.isVisible()
    assert reason.text().startswith("Distil is off. Will not fit: about") and "Settings" in reason.text()
    assert "Will not fit" in window.act_run.toolTip()
    line = view.line
    assert line.height() < 2 * line.fontMetrics().height()       # one line, not a wall of text
    assert not view.details.isVisible()                           # the full explanation on demand
    window.settings.advanced_toggle.setChecked(False)
    assert loss.mapTo(window, QPoint(0, 0)).y() == top_before      # the form did not move
    assert not window.start_run() and not window.running           # F5 / the API refuse too, quietly
    assert window.error_dialog is None


def test_alternative_button_changes_the_form_visibly_and_undo_restores_it(qtbot, window):
    load(qtbot, window)
    refuse(qtbot, window)
    view = window.settings.estimate
    labels = [b.text() for b in view.buttons]
    assert any(t.startswith("Cap at ") and t.endswith(" per class") for t in labels), labels
    assert any(t.startswith("Raise the memory budget") for t in labels), labels
    before = window.settings.config()
    cap = next(b for b in view.buttons if b.text().startswith("Cap at "))
    with qtbot.waitSignal(window.settings.replaced) as replaced:
        qtbot.mouseClick(cap, Qt.MouseButton.LeftButton)
    field = window.settings._fields["max_per_class"].widget
    expected = int(cap.text().split()[2].replace(",", ""))
    assert field.text() == str(expected) and window.settings.config().max_per_class == expected
    assert "#fff6d6" in field.styleSheet()                         # highlighted: the change is visible
    assert "max_per_class" in replaced.args[0] and "max_per_class" in window.statusBar().currentMessage()
    window.settings.update_estimate()
    assert window.settings.refusal is None and window.act_run.isEnabled()
    assert not window.run_panel.blocked.isVisible() and window.run_panel.info.isVisible()
    qtbot.waitUntil(lambda: field.styleSheet() == "", timeout=6_000)   # the highlight fades

    assert window.settings.undo_button.isEnabled()
    window.settings.undo_button.click()
    assert window.settings.config() == before
    window.settings.update_estimate()
    assert window.settings.refusal is not None and not window.act_run.isEnabled()
    assert not window.settings.undo_button.isEnabled()


def test_each_alternative_makes_the_run_fit(qtbot, window):
    load(qtbot, window)
    refuse(qtbot, window)
    count = len(window.settings.estimate.buttons)
    assert count >= 2
    for i in range(count):
        button = window.settings.estimate.buttons[i]
        label = button.text()
        button.click()
        window.settings.update_estimate()
        assert window.settings.refusal is None, label
        window.settings.undo()
        window.settings.update_estimate()
        assert window.settings.refusal is not None


def test_engine_refusal_is_not_a_failure(qtbot, make_window):
    """When the engine refuses anyway (the estimate was out of date), the run ends as "refused": no
    error dialog with a traceback, and the settings tab shows the estimate."""
    def refusing_run(config, control=None, dataset=None):
        yield Stage("data")
        raise ResourceError("Will not fit: the run needs about 9 GiB at its peak. Lower max_per_class to 10.")

    window = make_window(run_fn=refusing_run)
    load(qtbot, window)
    shown = []
    window.error_shown.connect(shown.append)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.start_run()
    assert finished.args == ["refused"] and not shown and window.error_dialog is None
    assert window.left_tabs.currentIndex() == 1
    assert "would not fit" in window.run_panel.info.text()


def test_classes_without_test_images_turn_distil_off_until_left_out(qtbot, window, tmp_path):
    """A class of one image has nothing to hold out for testing: the engine refuses such a run before its
    teacher. Distil said "press Distil (F5) to start" and then "could not start"; it is now off, with
    the reason and the ways out, until the class is left out (or test data is given)."""
    import numpy as np
    rng = np.random.default_rng(0)
    y = np.array([0] * 10 + [1] * 10 + [2])
    path = tmp_path / "lonely.npz"
    np.savez(path, x=rng.integers(0, 256, (len(y), 8, 8), dtype=np.uint8), y=y, classes=np.array(["a", "b", "c"]))
    load(qtbot, window, path)
    line = window.run_panel.blocked
    qtbot.waitUntil(line.isVisible)
    assert not window.act_run.isEnabled() and not window.run_panel.info.isVisible()
    assert not window.run_panel.bar.isVisible()           # the sentence takes the idle bar's width
    assert line.text().startswith("Distil is off. 1 class has no test images: set test data on the Dataset tab")
    assert "Classes (e.g. 'c')" in line.text()
    assert window.act_run.toolTip() == line.text()
    window.settings.set_config(window.settings.config().replace(classes=["a", "b"]))
    qtbot.waitUntil(lambda: window.act_run.isEnabled() and not line.isVisible())
    assert window.run_panel.bar.isVisible() and window.run_panel.info.isVisible()
