"""Legends that keep off the data: a plot's legend sits in whichever corner of its data area (or at
mid-height on the right) covers the fewest of the points drawn there, so no curve hides under it.

On a small window a legend takes half of a plot's height, and whichever fixed corner it used, some
run's curves ran through it (the gap's plateau, accuracies near 1). :class:`LegendPlacer` moves a legend
only when another spot covers strictly fewer points, so it does not jump between equal choices.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF

MARGIN_PX = 4
# spot → (legend point, data-area point) as fractions of their width and height (0 = left/top)
SPOTS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "top-right": ((1, 0), (1, 0)), "mid-right": ((1, 0.5), (1, 0.5)), "bottom-right": ((1, 1), (1, 1)),
    "top-left": ((0, 0), (0, 0)), "bottom-left": ((0, 1), (0, 1)),
}
LINES_FIRST = ("top-right", "bottom-right", "mid-right", "top-left", "bottom-left")      # falling curves
FRACTIONS_FIRST = ("mid-right", "top-right", "bottom-right", "top-left", "bottom-left")  # values near 0 and 1


def _offset(spot: str) -> tuple[float, float]:
    (ix, iy), _ = SPOTS[spot]
    return (MARGIN_PX if ix == 0 else -MARGIN_PX, MARGIN_PX if iy == 0 else -MARGIN_PX if iy == 1 else 0)


def spot_rect(area: QRectF, width: float, height: float, spot: str) -> QRectF:
    """Where a ``width`` × ``height`` legend at ``spot`` lies inside ``area`` (pixels)."""
    (ix, iy), (px, py) = SPOTS[spot]
    dx, dy = _offset(spot)
    left = area.left() + px * area.width() - ix * width + dx
    top = area.top() + py * area.height() - iy * height + dy
    return QRectF(left, top, width, height)


def covered(rect: QRectF, x: np.ndarray, y: np.ndarray) -> int:
    """How many of the points (pixels) lie inside ``rect``."""
    return int(np.count_nonzero((x >= rect.left()) & (x <= rect.right()) & (y >= rect.top()) & (y <= rect.bottom())))


def along(px: np.ndarray, py: np.ndarray, spacing: float = 3.0, most: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """A polyline's vertices (pixels) with points added along its segments every ``spacing`` pixels
    or closer (at most about ``most`` in all): a line of four evaluations is counted where it runs,
    not only at its four points."""
    if len(px) < 2:
        return px, py
    lengths = np.hypot(np.diff(px), np.diff(py))
    steps = np.minimum(np.ceil(lengths / spacing), max(1, most // len(lengths))).astype(int)
    steps = np.maximum(steps, 1)
    seg = np.repeat(np.arange(len(lengths)), steps)
    t = (np.arange(len(seg)) - np.repeat(np.cumsum(steps) - steps, steps)) / np.repeat(steps, steps)
    return (np.append(px[seg] + t * np.diff(px)[seg], px[-1]), np.append(py[seg] + t * np.diff(py)[seg], py[-1]))


class LegendPlacer:
    """Remembers each plot's legend spot and moves the legend to the spot covering the fewest points."""

    def __init__(self) -> None:
        self._spots: dict[pg.PlotItem, str] = {}
        self._order: dict[pg.PlotItem, tuple[str, ...]] = {}

    def add(self, plot: pg.PlotItem, order: tuple[str, ...] = LINES_FIRST) -> None:
        """Manage ``plot``'s legend, preferring the spots in ``order`` on ties; starts at ``order[0]``."""
        self._order[plot] = order
        self.reset(plot)

    def reset(self, plot: pg.PlotItem | None = None) -> None:
        """Back to the first spot (all plots when ``plot`` is None)."""
        for item in [plot] if plot is not None else list(self._order):
            self._move(item, self._order[item][0])

    def spot(self, plot: pg.PlotItem) -> str:
        return self._spots[plot]

    def place(self, plot: pg.PlotItem) -> str:
        """Move ``plot``'s legend to the spot over the fewest of its curves' points (and of its lines'
        points every few pixels, :func:`along`); return the spot."""
        box = plot.getViewBox()
        view, area = box.viewRect(), box.boundingRect()
        current = self._spots[plot]
        if view.width() <= 0 or view.height() <= 0:
            return current
        xs, ys = [], []
        for item in plot.listDataItems():
            x, y = item.getData()
            if x is None or not len(x):
                continue
            x, y = np.asarray(x, float), np.asarray(y, float)
            keep = np.isfinite(x) & np.isfinite(y)
            px = area.left() + (x[keep] - view.left()) / view.width() * area.width()
            py = area.top() + (view.bottom() - y[keep]) / view.height() * area.height()  # view y grows upwards
            if item.opts.get("pen") is not None:          # a drawn line covers its segments, not only its points
                px, py = along(px, py)
            xs.append(px)
            ys.append(py)
        if not xs:
            return current
        px, py = np.concatenate(xs), np.concatenate(ys)
        size = plot.legend.boundingRect()
        counts = {s: covered(spot_rect(area, size.width(), size.height(), s), px, py) for s in self._order[plot]}
        order = self._order[plot]
        best = min(order, key=lambda s: (counts[s], s != current, order.index(s)))
        if counts[best] < counts[current]:
            self._move(plot, best)
        return self._spots[plot]

    def _move(self, plot: pg.PlotItem, spot: str) -> None:
        item, parent = SPOTS[spot]
        plot.legend.anchor(itemPos=item, parentPos=parent, offset=_offset(spot))
        self._spots[plot] = spot
