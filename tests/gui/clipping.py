"""Find texts the window cuts off, and a probe that runs the real window at a given Qt scale factor.

``clipped_texts(window)`` lists every visible text that does not fit: labels and buttons narrower than
their text, wrapped labels shorter than their lines, tab titles shorter than their tab, combo boxes narrower than their longest item, elided
labels without the full text in their tooltip, scroll areas without a horizontal scroll bar whose content
is wider than their view, plot titles wider than their plot, plots and legends cut
by the plot view's edge, x tick labels running into each other.

Run as a script (``python tests/gui/clipping.py``) it builds the main window at 1024 × 700 under the
platform and ``QT_SCALE_FACTOR`` it inherits, loads the sample, distils a few steps, checks both
left-hand tabs before and after the run and prints one JSON line: device pixel ratio, grabbed size and the clipped texts.
``QT_SCALE_FACTOR`` must be set before the QApplication exists, hence a separate process.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import (QAbstractButton, QComboBox, QLabel, QScrollArea, QStyle, QStyleOptionComboBox, QTabBar,
                               QWidget)

SLACK = 1    # pixels of rounding allowed


def _name(widget: QWidget, text: str) -> str:
    return f"{type(widget).__name__} {widget.objectName() or ''} {text!r}".replace("  ", " ")


def _shown(widget: QWidget) -> bool:
    return widget.isVisible() and widget.width() > 0


def _combo_needs(combo: QComboBox) -> int:
    """Width a combo box needs to show its current text whole (frame, arrow and icon included)."""
    option = QStyleOptionComboBox()
    combo.initStyleOption(option)
    text = QSize(combo.fontMetrics().horizontalAdvance(combo.currentText()), combo.fontMetrics().height())
    return combo.style().sizeFromContents(QStyle.ContentsType.CT_ComboBox, option, text, combo).width()


def clipped_widgets(root: QWidget) -> list[str]:
    """Visible labels, buttons, tabs and combo boxes under ``root`` whose text does not fit (also wrapped
    labels too short for their lines), and scroll
    areas that cut their content's right side off."""
    from dgkip_gui.widgets.elided import ElidedLabel

    found = []
    for label in root.findChildren(QLabel):
        if not _shown(label) or not label.text() or label.pixmap() is not None and not label.pixmap().isNull():
            continue
        if isinstance(label, ElidedLabel):
            if label.is_elided() and label.text() not in label.toolTip():
                found.append(_name(label, label.text()) + " is elided without a tooltip")
        elif not label.wordWrap() and label.width() + SLACK < label.minimumSizeHint().width():
            found.append(_name(label, label.text()) + f" {label.width()} < {label.minimumSizeHint().width()} px")
        elif label.wordWrap() and label.height() + SLACK < label.heightForWidth(label.width()):
            found.append(_name(label, label.text()[:60]) + f" wraps to {label.heightForWidth(label.width())} px "
                         f"but is {label.height()} px high: its last lines are cut off")
    for button in root.findChildren(QAbstractButton):
        if _shown(button) and button.text() and button.width() + SLACK < button.sizeHint().width():
            found.append(_name(button, button.text()) + f" {button.width()} < {button.sizeHint().width()} px")
    for combo in root.findChildren(QComboBox):
        if _shown(combo) and combo.width() + SLACK < _combo_needs(combo):
            found.append(_name(combo, combo.currentText()) + f" {combo.width()} < {_combo_needs(combo)} px")
    for area in root.findChildren(QScrollArea):
        inner = area.widget()
        if (_shown(area) and inner is not None and area.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
                and inner.width() > area.viewport().width() + SLACK):
            found.append(f"{type(area).__name__} content {inner.width()} px wide in a {area.viewport().width()} px view "
                         "without a horizontal scroll bar: its right side is cut off")
    for bar in root.findChildren(QTabBar):
        if not _shown(bar):
            continue
        for i in range(bar.count()):
            if bar.tabRect(i).width() + SLACK < bar.tabSizeHint(i).width() or not bar.rect().contains(bar.tabRect(i)):
                found.append(_name(bar, bar.tabText(i)) + " tab is cut")
    return found


def clipped_plots(plots) -> list[str]:
    """Plot titles wider than their plot; plots or legends reaching past the plot view's edge; x tick
    labels running into each other."""
    view = plots.view
    visible = QRect(QPoint(0, 0), view.viewport().size())
    found = []
    for plot in {c.plot for c in plots._curves.values()}:
        title = plot.titleLabel.text
        if plot.titleLabel.item.boundingRect().width() > plot.width() + SLACK:
            found.append(f"plot title {title!r} is wider than its plot")
        where = view.mapFromScene(plot.sceneBoundingRect()).boundingRect().adjusted(SLACK, SLACK, -SLACK, -SLACK)
        if not visible.contains(where):
            found.append(f"plot {title!r} at {where.getRect()} is cut by the view {visible.getRect()}")
        found += _crowded_ticks(plot.getAxis("bottom"), title)
        legend = plot.legend
        if legend is not None and legend.isVisible():            # the data area clips its children
            inside = plot.getViewBox().sceneBoundingRect().adjusted(-SLACK, -SLACK, SLACK, SLACK)
            if not inside.contains(legend.sceneBoundingRect()):
                found.append(f"legend of {title!r} is cut by its plot's data area")
    return found


def _crowded_ticks(axis, title: str) -> list[str]:
    """The labelled x ticks of ``axis`` closer together than their widest label."""
    from PySide6.QtGui import QFontMetricsF
    from PySide6.QtWidgets import QApplication

    low, high = axis.range
    size = axis.width()
    levels = axis.tickValues(low, high, size) if high > low and size > 0 else []
    if not levels or len(levels[0][1]) < 2:
        return []
    spacing, values = levels[0]
    labels = axis.tickStrings(list(values), axis.scale * axis.autoSIPrefixScale, spacing)
    metrics = QFontMetricsF(axis.style["tickFont"] or QApplication.font())
    widest = max(metrics.horizontalAdvance(label) for label in labels)
    apart = size * spacing / (high - low)
    return [f"x tick labels of {title!r} overlap ({apart:.0f} px apart, {widest:.0f} px wide)"] if apart < widest + 2 else []


def clipped_texts(window) -> list[str]:
    """Everything cut off in the main window as it is shown now."""
    return clipped_widgets(window) + clipped_plots(window.plots)


def check_tabs(app, window, state: str) -> list[str]:
    """``clipped_texts`` with each left-hand tab shown in turn, tagged with ``state`` and the tab."""
    import time

    found = []
    view = window.plots.view
    window._memory_timer.stop()     # a RAM reading that lands mid-check is laid out only on the next pass
    for tab in range(window.left_tabs.count()):
        window.left_tabs.setCurrentIndex(tab)
        deadline = time.monotonic() + 5     # the plots' minimum is known once their axes have painted
        for _ in range(5):
            app.processEvents()
            time.sleep(0.02)
        while view.width() < view.scene_minimum().width() and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.02)
        found += [f"[{state}, {window.left_tabs.tabText(tab)} tab] {text}" for text in clipped_texts(window)]
    window._memory_timer.start()
    return found


def probe() -> dict:
    """Build, load, run and check the window (see the module docstring); returns the JSON fields."""
    import time

    from PySide6.QtCore import QSettings, QStandardPaths
    from PySide6.QtWidgets import QApplication

    QStandardPaths.setTestModeEnabled(True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from dgkip_gui.main_window import MainWindow
    from dgkip_gui.settings_store import SettingsStore

    def wait(condition, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the window did not get there in time")
            app.processEvents()
            time.sleep(0.01)

    folder = tempfile.mkdtemp(prefix="dgkip-probe-")
    try:
        window = MainWindow(SettingsStore(QSettings(str(Path(folder) / "settings.ini"), QSettings.Format.IniFormat)))
        window.resize(1024, 700)
        window.show()
        window.load_dataset("sample")
        wait(lambda: window.dataset is not None and not window.busy)
        clipped = check_tabs(app, window, "loaded")
        config = window.settings.config().replace(ipc=1, steps=6, eval_every=3, snapshot_every=2, max_per_class=40,
                                                  device="cpu", kernel="ntk-fc", loss="cross-entropy")
        window.settings.set_config(config)
        outcome = []
        window.run_finished.connect(outcome.append)
        assert window.start_run(), "the run did not start"
        wait(lambda: bool(outcome) and not window.busy)
        clipped += check_tabs(app, window, "finished")
        window.settings.advanced_toggle.setChecked(True)
        clipped += check_tabs(app, window, "advanced settings shown")
        grabbed = window.grab()
        result = {"dpr": window.devicePixelRatioF(), "grab": [grabbed.width(), grabbed.height()],
                  "size": [window.width(), window.height()], "outcome": outcome[0], "clipped": sorted(set(clipped))}
        window.run_session.ask_before_discarding = False   # a probe: no question about the unexported result
        window.close()
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)       # the probe window's settings file


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    print(json.dumps(probe()))
