"""Keyboard focus: Tab walks the form in its visual order and leaves tables (found by tabbing through the
window under Xvfb)."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from gui_helpers import load

pytestmark = pytest.mark.gui


def _tab_from(qtbot, widget):
    widget.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(widget.hasFocus)
    QTest.keyClick(widget, Qt.Key.Key_Tab)
    return QApplication.focusWidget()


def test_tab_goes_from_the_kernel_to_its_parameters_in_order(qtbot, window):
    """The kernel's parameter fields are built when the kernel is chosen, so they joined the end of the
    focus chain: Tab skipped from Kernel to λ and reached depth, w_std, b_std only after the last field."""
    window.left_tabs.setCurrentIndex(1)
    settings = window.settings
    settings.advanced_toggle.setChecked(True)                  # every field shown
    for kernel in ("ntk-fc", "rbf", "nngp-conv"):              # also after the fields were rebuilt
        settings.set_config(settings.config().replace(kernel=kernel, kernel_params={}))
        edits = list(settings._kernel_edits.values())
        assert edits, kernel
        qtbot.waitUntil(lambda: all(edit.isVisible() for edit in edits))   # shown on the next event loop turn
        focused = _tab_from(qtbot, settings._fields["kernel"].widget)
        for edit in edits:
            assert focused is edit, (kernel, focused)
            focused = _tab_from(qtbot, edit)
        assert focused is settings._fields["lam"].widget          # then λ, the field below them


def test_tab_leaves_the_dataset_and_results_tables(qtbot, window):
    load(qtbot, window)
    table = window.dataset_panel.table
    assert table.rowCount() == 10
    assert _tab_from(qtbot, table) is not table           # it stepped through every cell before
    results = window.results.table
    results.show()
    assert _tab_from(qtbot, results) is not results
