"""The synthetic images as a zoomable mosaic: one row per class, in pixel space.

:func:`mosaic` also builds the dataset panel's per-class thumbnails.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QLabel, QStackedWidget, QVBoxLayout, QWidget

GAP = 1                                     # pixels between tiles
GAP_COLOUR = np.array([0.82, 0.85, 0.9], np.float32)


def mosaic(images: np.ndarray, labels: np.ndarray, n_classes: int, columns: int | None = None) -> np.ndarray:
    """Tile ``images`` (m, H, W, C) with values in [0, 1] (or uint8) into one float32 RGB image
    (rows·(H+1)−1, cols·(W+1)−1, 3): row ``c`` holds the images labelled ``c`` in order, at most
    ``columns`` of them (default: as many as the largest class has)."""
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
    out = np.empty((n_classes * (h + GAP) - GAP, cols * (w + GAP) - GAP, 3), np.float32)
    out[:] = GAP_COLOUR
    filled = np.zeros(n_classes, int)
    for image, label in zip(images, labels):
        col = filled[label]
        if col >= cols:
            continue
        filled[label] += 1
        y, x = label * (h + GAP), col * (w + GAP)
        out[y:y + h, x:x + w] = np.clip(image, 0.0, 1.0)
    return out


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
        self.axis = pg.AxisItem("left", pen=pg.mkPen(None), textPen="#222")
        self.axis.setStyle(tickLength=0)
        self.axis.linkToView(self.box)
        self.view.addItem(self.axis, row=0, col=0)
        self.view.addItem(self.box, row=0, col=1)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.image)
        self._classes: list[str] = []
        self._tile_height = 0
        self.step: int | None = None

        self.placeholder = QLabel("The synthetic images appear here, one row per class, as soon as a run starts.")
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
        """Forget the images; the next :meth:`show_images` lays out one row per class."""
        self._classes = list(classes)
        self._tile_height = 0
        self.step = None
        self.image.clear()
        self.caption.setText("")
        self.stack.setCurrentWidget(self.placeholder)

    def show_images(self, images: np.ndarray, labels: np.ndarray, caption: str, step: int | None = None) -> None:
        """Show images (m, H, W, C) in [0, 1] or uint8, labelled by class index."""
        tile_height = images.shape[1]
        grid = mosaic(images, labels, len(self._classes))
        self.image.setImage(grid, autoLevels=False, levels=(0.0, 1.0))
        if tile_height != self._tile_height:
            self._tile_height = tile_height
            self._place_labels()
            self.box.autoRange(padding=0.02)
        self.step = step
        self.caption.setText(caption)
        self.stack.setCurrentWidget(self.view)

    def _place_labels(self) -> None:
        """Class names as the left axis's ticks, one per row of tiles (no minor ticks)."""
        centre = self._tile_height / 2
        self.axis.setTicks([[(row * (self._tile_height + GAP) + centre, name)
                             for row, name in enumerate(self._classes)], []])
