"""Wheel events never change a control that does not have focus.

Over a scrolling form, the mouse wheel should scroll the form, not turn whichever combo box or spin
box happens to pass under the pointer (a run could otherwise start with the wrong loss, unnoticed).
:func:`guard_wheel` gives every combo box and spin box under a widget the ``StrongFocus`` policy (a
wheel turn no longer focuses it) and an event filter that ignores wheel events while the control has
no focus; Qt then passes the ignored event to the parent, so the surrounding scroll area scrolls.
A control that has focus (clicked or tabbed into) keeps its wheel behaviour. :class:`PageWheel`
does the same for the zoomable views while the window's panels scroll.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractScrollArea, QAbstractSpinBox, QApplication, QComboBox, QWidget

GUARDED = (QComboBox, QAbstractSpinBox)     # the controls whose value a wheel turn changes


class WheelGuard(QObject):
    """Event filter: a wheel event on an unfocused control is ignored and handed to its parent."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            event.ignore()      # not accepted: QApplication propagates it to the parent widget
            return True         # and the control itself never sees it
        return False


def _guard() -> WheelGuard:
    """One filter object for the whole application (parented to it, so it lives as long as the app)."""
    app = QApplication.instance()
    guard = app.findChild(WheelGuard, "wheel-guard")
    if guard is None:
        guard = WheelGuard(app)
        guard.setObjectName("wheel-guard")
    return guard


def guard_wheel(root: QWidget) -> None:
    """Guard ``root`` (if it is a control) and every combo box and spin box under it. Call again after
    adding controls; guarding twice is harmless (Qt installs a filter once per object)."""
    guard = _guard()
    controls = [root] if isinstance(root, GUARDED) else []
    for kind in GUARDED:
        controls += root.findChildren(kind)
    for control in controls:
        control.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        control.installEventFilter(guard)


class PageWheel(QObject):
    """Event filter for a zoomable view (pyqtgraph's plots and image grid) inside a scrolling page:
    while ``page`` scrolls in the wheel's direction (its scroll bar has a range) a plain wheel turn
    goes to that scroll bar, also at the bar's end, so that overshooting the end never zooms (a page
    scrolled by the wheel otherwise stuck on the first plot under the pointer, and zoomed it); with
    Ctrl held, or where the page does not scroll, the view zooms as before. Install it on the view's
    viewport."""

    def __init__(self, page: QAbstractScrollArea, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.page = page

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() != QEvent.Type.Wheel or event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            return False
        delta = event.angleDelta()
        bar = self.page.horizontalScrollBar() if abs(delta.x()) > abs(delta.y()) else self.page.verticalScrollBar()
        if bar.maximum() <= bar.minimum():
            return False
        QApplication.sendEvent(bar, event)
        return True
