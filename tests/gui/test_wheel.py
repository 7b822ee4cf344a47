"""The mouse wheel over a form scrolls the form: it never changes a combo box or spin box that does not
have focus (issue 16: scrolling the settings changed Precision and then Loss, unnoticed)."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QScrollArea, QWidget

from dgkip_gui.transfer_dialog import TransferDialog, TransferOptions

from gui_helpers import load

pytestmark = pytest.mark.gui


def wheel(widget: QWidget, notches: int) -> None:
    """One wheel turn of ``notches`` (positive = away from the user) over the widget's centre, entered
    as the platform enters it (QTest.wheelEvent on the window): a spontaneous event that Qt delivers to
    the widget under the pointer and, when ignored there, to its parents."""
    top = widget.window()
    area = next((a for a in _ancestors(widget) if isinstance(a, QScrollArea)), None)
    if area is not None:
        area.ensureWidgetVisible(widget)
    pos = widget.mapTo(top, widget.rect().center())
    hit = top.childAt(pos) or top
    assert hit is widget or widget.isAncestorOf(hit), f"{widget!r} is not under the pointer ({hit!r} is)"
    QTest.wheelEvent(top.windowHandle(), QPointF(pos), QPoint(0, 120 * notches))
    QApplication.processEvents()


def _ancestors(widget: QWidget):
    while (widget := widget.parentWidget()) is not None:
        yield widget


def value(widget: QWidget):
    return widget.currentIndex() if isinstance(widget, QComboBox) else widget.value()


def controls(root: QWidget) -> list[QWidget]:
    return [w for kind in (QComboBox, QAbstractSpinBox) for w in root.findChildren(kind) if w.isEnabled()]


def assert_wheel_changes_nothing(root: QWidget) -> int:
    found = controls(root)
    for widget in found:
        assert not widget.hasFocus()
        before = value(widget)
        for notches in (-1, 1, -3, 3):
            wheel(widget, notches)
            assert value(widget) == before, f"the wheel changed {widget.toolTip() or type(widget).__name__}"
    return len(found)


def test_wheel_helper_changes_an_unguarded_control(qtbot):
    """The event the tests send does turn a plain combo box (so the tests below can fail)."""
    box = QComboBox()
    qtbot.addWidget(box)
    box.addItems(["a", "b", "c"])
    box.show()
    wheel(box, -1)
    assert box.currentIndex() == 1


def test_wheel_over_the_window_changes_no_setting(qtbot, window):
    load(qtbot, window)
    window.left_tabs.setCurrentIndex(1)
    window.settings.advanced_toggle.setChecked(True)
    window.setFocus()
    config = window.settings.config()
    form = len(controls(window.settings))                   # 20 since the teacher and centre-selection boxes
    assert form >= 20 and assert_wheel_changes_nothing(window) == form     # every combo and spin box of the form
    assert window.settings.config() == config


def test_wheel_over_the_form_scrolls_it_instead(qtbot, make_window):
    window = make_window(resize=False)
    window.resize(1024, 700)
    load(qtbot, window)
    window.left_tabs.setCurrentIndex(1)
    window.settings.advanced_toggle.setChecked(True)
    bar = window.settings.scroll.verticalScrollBar()        # the form's, inside the window's own
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    loss = window.settings._fields["loss"].widget
    before = loss.currentIndex()
    wheel(loss, -3)
    assert loss.currentIndex() == before
    assert bar.value() > 0          # the ignored event reached the scroll area


def test_focused_control_still_takes_the_wheel(qtbot, window):
    """Clicking or tabbing into a control is a choice: then the wheel turns it."""
    loss = window.settings._fields["loss"].widget
    window.left_tabs.setCurrentIndex(1)
    loss.setCurrentIndex(0)
    loss.setFocus()
    qtbot.waitUntil(loss.hasFocus)
    wheel(loss, -1)
    assert loss.currentIndex() == 1


def test_wheel_over_the_transfer_dialog_changes_nothing(qtbot, tmp_path):
    dialog = TransferDialog(Path(tmp_path), TransferOptions(seeds=3, epochs=None))
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.length.setCurrentIndex(2)        # custom: the epochs spin box is enabled too
    dialog.buttons.setFocus()
    assert assert_wheel_changes_nothing(dialog) == 3
    assert dialog.options().seeds == 3
