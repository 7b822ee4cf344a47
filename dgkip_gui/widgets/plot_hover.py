"""Hover read-out for the live plots (TensorBoard-style): a vertical line at the nearest recorded
x under the pointer and a box with every curve's value there, in the plot's own units.

Values come from the raw ``Series`` buffers (not the log-transformed curve data), so a log-axis
plot reads out gaps and radii as they are, not their logarithms.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, QRectF
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QWidget

SeriesXY = Callable[[], tuple[np.ndarray, np.ndarray]]     # a curve's current (x, y) buffers


@dataclass
class _Hover:
    line: pg.InfiniteLine
    text: pg.TextItem
    xlabel: str
    curves: list[tuple[str, SeriesXY]]


def nearest(xs: np.ndarray, x: float) -> int:
    """Index of the value of sorted ``xs`` (non-empty) closest to ``x``."""
    i = int(np.clip(np.searchsorted(xs, x), 1, len(xs) - 1)) if len(xs) > 1 else 0
    return i - 1 if len(xs) > 1 and abs(xs[i - 1] - x) <= abs(xs[i] - x) else i


def readout(xlabel: str, curves: list[tuple[str, SeriesXY]], x: float) -> tuple[float, str] | None:
    """(the x shown, the text) for the recorded point nearest ``x``: ``"step 120\\ngap: 1.23e-03…"``;
    ``None`` when no curve has data. Each curve reports its own point nearest to that x."""
    series = [(name, *get()) for name, get in curves]
    series = [(name, xs, ys) for name, xs, ys in series if len(xs)]
    if not series:
        return None
    candidates = [xs[nearest(xs, x)] for _, xs, _ in series]
    at = float(min(candidates, key=lambda c: abs(c - x)))
    lines = [f"{xlabel} {at:,.0f}"]
    for name, xs, ys in series:
        i = nearest(xs, at)
        if xs[i] == at:
            lines.append(f"{name}: {ys[i]:.4g}")
    return at, "\n".join(lines)


class HoverReadout(QObject):
    """Attach to the plots of one ``GraphicsLayoutWidget``; follows the mouse over its views and
    hides when the pointer leaves the widget (a read-out stayed up over a finished run's plot).

    It reads the viewport's own mouse moves, not the scene's ``sigMouseMoved``: pyqtgraph drops a
    scene move within 1/``mouseRateLimit`` (10 ms) of the last, so a quick flick that stopped left
    the read-out at where the pointer had been. A plot whose range changes under a resting pointer
    (a drag pans it after the move is seen, a wheel zooms it, a live run's auto-range follows new
    steps) reads out again at that pointer. The viewports are those of the scene's views when
    attached (LivePlots has one view and never replaces its viewport)."""

    def __init__(self, scene: pg.GraphicsScene) -> None:
        super().__init__(scene)
        self._plots: dict[pg.PlotItem, _Hover] = {}
        self._scene = scene
        self._views = {view.viewport(): view for view in scene.views()}
        self._pointer: tuple[QWidget, QPoint] | None = None     # (viewport, position) while inside
        for viewport in self._views:
            viewport.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Leave:
            self._pointer = None
            self.hide()
        elif event.type() == QEvent.Type.MouseMove and watched in self._views and isinstance(event, QMouseEvent):
            self._pointer = (watched, event.position().toPoint())
            self._reread()
        return False

    def _reread(self) -> None:
        """Read out at the pointer's last position inside a viewport (nothing once it has left)."""
        if self._pointer is not None:
            viewport, at = self._pointer
            self._moved(self._views[viewport].mapToScene(at))

    def hide(self) -> None:
        """Hide every read-out (the pointer left the plots)."""
        for hover in self._plots.values():
            hover.line.hide()
            hover.text.hide()

    def add(self, plot: pg.PlotItem, xlabel: str, curves: list[tuple[str, SeriesXY]]) -> None:
        line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#888", width=1))
        line.setZValue(100)
        line.hide()
        plot.addItem(line, ignoreBounds=True)
        # the box lives in the scene, not in the plot's view, which clips its items: on a narrow plot
        # the box is wider than the view and may cover the axis or a neighbour while it is shown
        text = pg.TextItem(color="#222", fill=pg.mkBrush(255, 255, 255, 220), border=pg.mkPen("#aaa"),
                           anchor=(0, 0))              # placed by its left edge (box_left)
        text.setZValue(1000)
        text.hide()
        self._scene.addItem(text)
        self._plots[plot] = _Hover(line, text, xlabel, curves)
        plot.vb.sigRangeChanged.connect(self._reread)

    def text_of(self, plot: pg.PlotItem) -> str:
        """The read-out shown over ``plot`` ("" when hidden)."""
        hover = self._plots[plot]
        return hover.text.toPlainText() if hover.text.isVisible() else ""

    def _moved(self, pos: QPointF) -> None:
        for plot, hover in self._plots.items():
            found = None
            if plot.vb.sceneBoundingRect().contains(pos):
                point = plot.vb.mapSceneToView(pos)
                found = readout(hover.xlabel, hover.curves, point.x())
            if found is None:
                hover.line.hide()
                hover.text.hide()
                continue
            at, text = found
            hover.line.setPos(at)
            hover.text.setText(text)
            area = plot.vb.sceneBoundingRect()
            shown = self._shown_rect()
            width = hover.text.boundingRect().width()
            hover.text.setPos(box_left(pos.x(), width, area.left(), area.right(), shown.left(), shown.right()),
                              area.top())
            hover.line.show()
            hover.text.show()

    def _shown_rect(self) -> QRectF:
        """The part of the scene the widget shows, in scene coordinates."""
        views = self._scene.views()
        if not views:
            return self._scene.sceneRect()
        view = views[0]
        return view.mapToScene(view.viewport().rect()).boundingRect()


def box_left(x: float, width: float, left: float, right: float, lo: float, hi: float) -> float:
    """The scene x of a ``width``-wide read-out's left edge for the pointer at scene x ``x`` over a plot
    spanning ``left``..``right``: right of the pointer in the plot's left half, left of it in the right
    half, moved inside the plot where that side lacks room, and never outside ``lo``..``hi`` (what the
    widget shows; at ``lo`` when the box is wider)."""
    start = x if x < (left + right) / 2 else x - width
    if width <= right - left:
        start = max(left, min(start, right - width))
    return max(lo, min(start, hi - width))
