"""The synthetic images as a zoomable mosaic: one row per class, in pixel space — or one column per
class when that shows the tiles larger (few images per class in a wide panel: at IPC 1, ten classes
stacked in one column were 12–15 px tall in a 1,024 × 700 window; side by side they fill its width).

:func:`mosaic` also builds the dataset panel's per-class thumbnails.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics, QImage
from PySide6.QtWidgets import QLabel, QStackedWidget, QVBoxLayout, QWidget

GAP = 1                                     # pixels between tiles
GAP_COLOUR = np.array([0.82, 0.85, 0.9], np.float32)


def mosaic(images: np.ndarray, labels: np.ndarray, n_classes: int, columns: int | None = None,
           by_column: bool = False) -> np.ndarray:
    """Tile ``images`` (m, H, W, C) with values in [0, 1] (or uint8) into one float32 RGB image
    (rows·(H+1)−1, cols·(W+1)−1, 3): row ``c`` holds the images labelled ``c`` in order, at most
    ``columns`` of them (default: as many as the largest class has). ``by_column``: column ``c``
    holds them instead, top to bottom."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    if images.ndim == 3:
        images = images[..., None]
    m, h, w, channels = images.shape
    if channels == 1:
        images = np.repeat(images, 3, axis=3)
    elif channels != 3:
        images = np.repeat(images.mean(axis=3, keepdims=True), 3, axis=3)
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes) if m else np.zeros(n_classes, int)
    cols = max(1, int(columns if columns is not None else counts.max(initial=1)))
    across, down = (n_classes, cols) if by_column else (cols, n_classes)
    out = np.empty((down * (h + GAP) - GAP, across * (w + GAP) - GAP, 3), np.float32)
    out[:] = GAP_COLOUR
    filled = np.zeros(n_classes, int)
    for image, label in zip(images, labels):
        col = filled[label]
        if col >= cols:
            continue
        filled[label] += 1
        row, col = (col, label) if by_column else (label, col)
        y, x = row * (h + GAP), col * (w + GAP)
        out[y:y + h, x:x + w] = np.clip(image, 0.0, 1.0)
    return out


def columns_show_larger(tile: tuple[int, int], per_class: int, n_classes: int, area: tuple[float, float],
                        name_width: float) -> bool:
    """Whether one column per class shows ``tile`` (H, W) pixels larger than one row per class, in a
    view of ``area`` (width, height) pixels, with ``per_class`` images a class; only where each class's
    name (``name_width`` pixels) fits under its column."""
    if n_classes < 2 or per_class < 1:
        return False
    h, w = (t + GAP for t in tile)
    width, height = area

    def scale(across: int, down: int) -> float:
        return min(width / (across * w), height / (down * h))

    by_column = scale(n_classes, per_class)
    return by_column > scale(per_class, n_classes) and by_column * w >= name_width


def to_qimage(rgb: np.ndarray) -> QImage:
    """A float RGB array in [0, 1] (H, W, 3) as a QImage that owns its pixels."""
    data = np.ascontiguousarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    h, w, _ = data.shape
    return QImage(data.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class ImageGrid(QWidget):
    """Persistent ``ImageItem`` in a zoomable ``ViewBox`` (wheel zooms, drag pans, right-click → View All)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground("w")
        # class names on an axis beside the view box, linked to it: laid out outside the view, so names
        # are never clipped (text items inside the view were cut at its left edge)
        self.box = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=True)
        self.axis = pg.AxisItem("left", pen=pg.mkPen(None), textPen="#222")            # one row per class
        self.bottom = pg.AxisItem("bottom", pen=pg.mkPen(None), textPen="#222")       # one column per class
        for axis in (self.axis, self.bottom):
            axis.setStyle(tickLength=0)
            axis.linkToView(self.box)
        self.view.addItem(self.axis, row=0, col=0)
        self.view.addItem(self.box, row=0, col=1)
        self.view.addItem(self.bottom, row=1, col=1)
        self.bottom.hide()
        self.image = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.image)
        self._classes: list[str] = []
        self._layout: tuple | None = None         # (tile H, W, images a class, by column) shown now
        self.by_column = False
        self.step: int | None = None

        self.placeholder = QLabel("The synthetic images appear here, one row (or column) per class, as soon "
                                  "as a run starts.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)          # wraps in a narrow window instead of widening it
        self.placeholder.setStyleSheet("color: #666;")
        self.caption = QLabel("")
        self.caption.setStyleSheet("color: #444;")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.view)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.caption)

    def reset(self, classes: list[str]) -> None:
        """Forget the images; the next :meth:`show_images` lays them out anew."""
        self._classes = list(classes)
        self._layout = None
        self.step = None
        self.image.clear()
        self.caption.setText("")
        self.stack.setCurrentWidget(self.placeholder)

    def show_images(self, images: np.ndarray, labels: np.ndarray, caption: str, step: int | None = None) -> None:
        """Show images (m, H, W, C) in [0, 1] or uint8, labelled by class index. The orientation is
        chosen when the tile size or the images a class change (not on every snapshot or resize)."""
        n = len(self._classes)
        labels = np.asarray(labels)
        per_class = int(np.bincount(labels, minlength=n).max(initial=1)) if len(labels) else 1
        tile = (int(images.shape[1]), int(images.shape[2]))
        if self._layout is None or self._layout[:3] != (*tile, per_class):
            metrics = QFontMetrics(self.bottom.font())
            names = max((metrics.horizontalAdvance(name) for name in self._classes), default=0)
            self.by_column = columns_show_larger(tile, per_class, n, self._area(), names + 4)
        grid = mosaic(images, labels, n, by_column=self.by_column)
        self.image.setImage(grid, autoLevels=False, levels=(0.0, 1.0))
        layout = (*tile, per_class, self.by_column)
        if layout != self._layout:
            self._layout = layout
            self._place_labels(tile)
            self.box.autoRange(padding=0.02)
        self.step = step
        self.caption.setText(caption)
        self.stack.setCurrentWidget(self.view)

    def _area(self) -> tuple[float, float]:
        """The pixels the tiles can use: the view less an axis's room (before the first layout, the
        stack's size; 300 × 160 before the window is shown)."""
        width, height = self.stack.width(), self.stack.height()
        if width < 50 or height < 50:
            return 300.0, 160.0
        return max(1.0, width - 30.0), max(1.0, height - 30.0)

    def _place_labels(self, tile: tuple[int, int]) -> None:
        """Class names as the ticks of the axis beside the classes (left for rows, below for columns),
        one per class (no minor ticks); the other axis hidden."""
        size = tile[1] if self.by_column else tile[0]
        ticks = [[(i * (size + GAP) + size / 2, name) for i, name in enumerate(self._classes)], []]
        shown, hidden = (self.bottom, self.axis) if self.by_column else (self.axis, self.bottom)
        shown.setTicks(ticks)
        shown.show()
        hidden.hide()
