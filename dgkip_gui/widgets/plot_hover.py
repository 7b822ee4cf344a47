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
from PySide6.QtCore import QPointF

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


class HoverReadout:
    """Attach to the plots of one ``GraphicsLayoutWidget``; follows the mouse over its scene."""

    def __init__(self, scene: pg.GraphicsScene) -> None:
        self._plots: dict[pg.PlotItem, _Hover] = {}
        scene.sigMouseMoved.connect(self._moved)

    def add(self, plot: pg.PlotItem, xlabel: str, curves: list[tuple[str, SeriesXY]]) -> None:
        line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#888", width=1))
        text = pg.TextItem(color="#222", fill=pg.mkBrush(255, 255, 255, 220), border=pg.mkPen("#aaa"))
        for item in (line, text):
            item.setZValue(100)
            item.hide()
            plot.addItem(item, ignoreBounds=True)
        self._plots[plot] = _Hover(line, text, xlabel, curves)

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
            (left, right), (bottom, top) = plot.vb.viewRange()
            hover.text.setAnchor((0, 0) if point.x() < (left + right) / 2 else (1, 0))
            hover.text.setPos(point.x(), top)
            hover.line.show()
            hover.text.show()
