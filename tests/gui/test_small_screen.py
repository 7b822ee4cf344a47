"""The window works at 1024 × 700: nothing forces it wider, buttons and titles are whole, long texts
elide with the full text in a tooltip (run text, About's log path, the Transfer tab's path)."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, QRect, QSize, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from dgkip_gui.dialogs import AboutDialog
from dgkip_gui.widgets.elided import ElidedLabel
from dgkip_gui.widgets.plots import PLOT_MIN_HEIGHT_PX
from dgkip_gui.widgets.transfer_panel import ExportInfo

from clipping import clipped_texts
from gui_helpers import load

pytestmark = pytest.mark.gui


def inside(widget, container) -> bool:
    rect = QRect(widget.mapTo(container, QPoint(0, 0)), widget.size())
    return container.rect().contains(rect)


def test_window_fits_1024_by_700(qtbot, make_window):
    window = make_window(resize=False)
    assert window.minimumSizeHint().width() <= 1024 and window.minimumSizeHint().height() <= 700
    window.resize(1024, 700)
    load(qtbot, window)
    qtbot.waitUntil(lambda: window.width() <= 1024)
    for button in window.run_panel.buttons.values():
        assert inside(button, window.run_panel), button.defaultAction().text()
        assert button.width() >= button.sizeHint().width()                 # not squeezed
    view = window.plots.view                  # the plots' minimum is known once their axes have painted
    qtbot.waitUntil(lambda: view.width() >= view.scene_minimum().width(), timeout=5000)
    assert clipped_texts(window) == []                                   # texts, tabs, plots and legends whole
    labels = [item.getAxis("left").label for item in view.ci.items if hasattr(item, "getAxis")]
    assert len(labels) == 5 and all(label.isVisible() for label in labels)   # every y-axis label fits its axis
    window.left_tabs.setCurrentIndex(1)                                  # the settings form, also advanced
    for advanced in (False, True):
        window.settings.advanced_toggle.setChecked(advanced)
        qtbot.wait(50)
        assert clipped_texts(window) == [], f"advanced settings shown: {advanced}"
    assert window.minimumSizeHint().width() <= 1024


def test_long_run_text_elides_with_a_tooltip(qtbot, make_window):
    window = make_window(resize=False)
    window.resize(1024, 700)
    long = "Step 1,234 of 10,000 · 12.3 steps/s · ETA 11:52 · " + "stopping after this step… " * 5
    window.run_panel.info.setText(long)
    qtbot.waitUntil(window.run_panel.info.is_elided)
    assert window.run_panel.info.shown_text().endswith("…")
    assert long in window.run_panel.info.toolTip()


def test_about_and_transfer_paths_elide_with_tooltips(qtbot, window, monkeypatch, tmp_path):
    deep = Path("/home/someone/.local/share/DGKIP/DGKIP Studio/logs/with/a/very/long/path/dgkip-studio.log")
    monkeypatch.setattr("dgkip_gui.dialogs.log_path", lambda: deep)
    about = AboutDialog(window)
    qtbot.addWidget(about)
    about.resize(400, 300)
    about.show()
    label = about.log_label
    assert isinstance(label, ElidedLabel)
    qtbot.waitUntil(label.is_elided)
    assert label.shown_text().endswith("dgkip-studio.log") and "…" in label.shown_text()
    assert str(deep) in label.toolTip()

    folder = tmp_path.joinpath(*["a-long-folder-name"] * 8, "mnist-dgkip-hinge-ipc10")
    info = ExportInfo(folder, "sample", None, ["0", "1"], 20, {})
    window.transfer_panel.show_export(info)
    window.results_tabs.setCurrentWidget(window.transfer_panel)
    source = window.transfer_panel.source
    qtbot.waitUntil(source.is_elided)
    assert source.shown_text().startswith("mnist-dgkip-hinge-ipc10") and str(folder) in source.toolTip()


def test_first_launch_fits_the_screen(qtbot, make_window):
    """With no saved geometry the window opens at 1440 × 900 only where the screen has room; on a
    smaller screen (offscreen's is 800 × 600) it takes the screen, or its 1024 × 700 minimum."""
    window = make_window(resize=False)
    screen = window.screen().availableGeometry().size()
    assert window.first_size() == QSize(min(1440, screen.width()), min(900, screen.height()))
    assert window.width() == max(window.minimumWidth(), min(1440, screen.width()))
    assert window.height() == max(window.minimumHeight(), min(900, screen.height()))


def test_a_smaller_window_scrolls_instead_of_growing(qtbot, make_window):
    """A 1,280 × 800 screen at 150 % scaling gives 853 × 533 px: the window takes that size, the run bar
    stays whole across the top and the panels under it scroll (plots keep their minimum height rather
    than squeezing to a few pixels); at 1024 × 700 nothing scrolls."""
    window = make_window(resize=False)
    area = window.panels
    window.resize(1024, 700)
    load(qtbot, window)
    qtbot.waitUntil(lambda: window.size() == QSize(1024, 700))
    qtbot.wait(50)
    assert area.horizontalScrollBar().maximum() == 0 and area.verticalScrollBar().maximum() == 0
    assert window.minimumSizeHint().width() <= 640 and window.minimumSizeHint().height() <= 400
    window.resize(853, 533)
    qtbot.waitUntil(lambda: window.size() == QSize(853, 533))
    qtbot.waitUntil(lambda: area.horizontalScrollBar().maximum() > 0 and area.verticalScrollBar().maximum() > 0)
    for button in window.run_panel.buttons.values():                     # all on screen, none squeezed
        assert inside(button, window), button.defaultAction().text()
        assert button.width() >= button.sizeHint().width()
    for plot in window.plots._step_plots:
        assert plot.getViewBox().height() >= PLOT_MIN_HEIGHT_PX


def _wheel(widget, centre: QPointF, steps: int, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_scrolls_a_scrolling_page_and_ctrl_wheel_zooms(qtbot, make_window):
    """Over the plots a plain wheel turn scrolls the panels while they can scroll, leaving the plot as it
    was (it zoomed, and the page stuck under the pointer); Ctrl+wheel zooms. With nothing to scroll the
    wheel zooms as before (test_plots: the teacher plot zoomed by real wheel events at 1280 × 820)."""
    window = make_window(resize=False)
    load(qtbot, window)
    window.resize(853, 533)
    bar = window.panels.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    plot = window.plots._step_plots[2]                       # test accuracy
    view = window.plots.view

    def centre() -> QPointF:
        return QPointF(view.mapFromScene(plot.vb.sceneBoundingRect().center()))

    before = plot.viewRange()
    _wheel(view.viewport(), centre(), -1)
    assert bar.value() > 0 and plot.viewRange() == before
    bar.setValue(bar.maximum())                              # at the end: overshooting does not zoom
    _wheel(view.viewport(), centre(), -1)
    assert bar.value() == bar.maximum() and plot.viewRange() == before
    _wheel(view.viewport(), centre(), 1, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: plot.viewRange() != before)      # the plot under the pointer zoomed
