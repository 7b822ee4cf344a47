"""The dataset panel: an inviting empty state (drop zone, sample dataset, recent datasets), loading
progress, and, once loaded, a per-class table with counts and thumbnails plus the problems found
(the skipped files named in a line of their own).

The panel only displays and asks; the main window loads datasets (on a worker thread).
"""
from __future__ import annotations

import html

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QFrame, QHBoxLayout, QHeaderView, QLabel, QListWidget,
                               QListWidgetItem, QMenu, QProgressBar, QPushButton, QSizePolicy, QStackedWidget,
                               QTableWidget, QTableWidgetItem, QToolButton, QVBoxLayout, QWidget)

from engine.data import Dataset
from engine.data.report import format_bytes
from dgkip_gui.widgets.image_grid import mosaic, to_qimage
from dgkip_gui.widgets.problems_view import ProblemsView
from dgkip_gui.settings_store import SAMPLE

THUMBS_PER_CLASS = 4
THUMB_HEIGHT = 26


def display_name(path: str) -> str:
    """How a dataset path reads in lists: the folder or file name, or the sample dataset's name."""
    return "Sample: handwritten digits" if path == SAMPLE else Path(path).name or path


def recent_names(paths: list[str]) -> list[str]:
    """The recent list's labels for ``paths``: :func:`display_name`, with the folder that holds it
    added where two paths would read alike ("train — …/mnist" and "train — …/cifar10")."""
    names = [display_name(p) for p in paths]
    return [name if names.count(name) == 1 or p == SAMPLE else f"{name} — {_parent(p)}"
            for name, p in zip(names, paths)]


def _parent(path: str) -> str:
    """The folder holding ``path``, as its last two parts ("…/data/mnist") when it has more."""
    parent = Path(path).parent
    parts = parent.parts
    return str(parent) if len(parts) <= 3 else "…/" + "/".join(parts[-2:])


def class_strip(x: np.ndarray, y: np.ndarray, label: int, count: int = THUMBS_PER_CLASS) -> QPixmap:
    """The first ``count`` training images of class ``label`` side by side, ``THUMB_HEIGHT`` high (as
    many as the class has, up to ``count``: no empty slots)."""
    picked = x[np.flatnonzero(y == label)[:count]]
    strip = mosaic(picked, np.zeros(len(picked), np.int64), 1, columns=max(1, len(picked)))
    pixmap = QPixmap.fromImage(to_qimage(strip))
    return pixmap.scaledToHeight(THUMB_HEIGHT, Qt.TransformationMode.FastTransformation)


class DatasetPanel(QWidget):
    """Three pages: empty (with drop zone and sample button), loading, loaded."""
    sample_requested = Signal()
    open_requested = Signal()           # a file or a folder
    open_folder_requested = Signal()
    recent_requested = Signal(str)
    test_data_requested = Signal(str)   # "folder" or "file"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.stack = QStackedWidget()
        self.stack.addWidget(self._empty_page())
        self.stack.addWidget(self._loading_page())
        self.stack.addWidget(self._loaded_page())
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.setStyleSheet("QLabel { background: #fdecea; color: #8a1c1c; border: 1px solid #f5c2c0;"
                                 " border-radius: 4px; padding: 6px; }")
        self.error.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.error)
        layout.addWidget(self.stack, 1)

    # -- pages -------------------------------------------------------------------
    def _empty_page(self) -> QWidget:
        page = QWidget()
        drop = QFrame()
        drop.setObjectName("dropZone")
        drop.setStyleSheet("#dropZone { border: 2px dashed #8aa4c8; border-radius: 10px; background: #f4f8fd; }")
        hint = QLabel("<b>Drop a dataset folder or file here</b><br>"
                      "<span style='color:#555'>a folder with one subfolder per class, or an .npz file</span>")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setWordWrap(True)
        self.sample_button = QPushButton("Try the sample dataset\n(handwritten digits, 10 classes)")
        self.sample_button.setMinimumHeight(64)
        big = QFont(self.sample_button.font())
        big.setPointSizeF(big.pointSizeF() * 1.15)
        big.setBold(True)
        self.sample_button.setFont(big)
        self.sample_button.setStyleSheet("QPushButton { background: #2f6db5; color: white; border-radius: 8px;"
                                         " padding: 8px 16px; } QPushButton:hover { background: #3b7fcf; }")
        self.sample_button.clicked.connect(self.sample_requested)
        self.open_button = QPushButton("Open file or folder…")
        self.open_button.setToolTip("A folder with one subfolder per class, an .npz file, IDX files or CIFAR "
                                    "batches (Ctrl+O)")
        self.open_button.clicked.connect(self.open_requested)
        open_folder = QPushButton("Open folder…")
        open_folder.setToolTip("Choose a dataset folder (Ctrl+Shift+O)")
        open_folder.clicked.connect(self.open_folder_requested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(open_folder)
        arrow = QLabel("⬇")
        arrow.setAlignment(Qt.AlignmentFlag.AlignCenter)
        arrow.setStyleSheet("color: #8aa4c8; font-size: 40pt;")
        first_run = QLabel("No data yet? The sample dataset is built in:")
        first_run.setAlignment(Qt.AlignmentFlag.AlignCenter)
        first_run.setStyleSheet("color: #555;")
        drop_layout = QVBoxLayout(drop)
        drop_layout.setContentsMargins(18, 18, 18, 18)
        drop_layout.setSpacing(12)
        drop_layout.addStretch(1)
        drop_layout.addWidget(arrow)
        drop_layout.addWidget(hint)
        drop_layout.addLayout(buttons)
        drop_layout.addStretch(1)
        drop_layout.addWidget(first_run)
        drop_layout.addWidget(self.sample_button)
        drop_layout.addStretch(1)

        self.recent_label = QLabel("Recent datasets")
        self.recent_list = QListWidget()
        self.recent_list.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.recent_list.itemClicked.connect(lambda item: self.recent_requested.emit(item.data(Qt.ItemDataRole.UserRole)))
        layout = QVBoxLayout(page)
        layout.addWidget(drop, 1)
        layout.addWidget(self.recent_label)
        layout.addWidget(self.recent_list)
        return page

    def _loading_page(self) -> QWidget:
        page = QWidget()
        self.loading_label = QLabel()
        self.loading_label.setWordWrap(True)
        self.loading_bar = QProgressBar()
        self.loading_bar.setRange(0, 0)
        layout = QVBoxLayout(page)
        layout.addStretch(1)
        layout.addWidget(self.loading_label)
        layout.addWidget(self.loading_bar)
        layout.addStretch(1)
        return page

    def _loaded_page(self) -> QWidget:
        page = QWidget()
        self.title = QLabel()
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet("color: #333;")
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Class", "Train", "Test", "Examples"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setTabKeyNavigation(False)     # Tab leaves the table (it stepped through all 40+ cells)
        self.table.setIconSize(QSize(THUMBS_PER_CLASS * THUMB_HEIGHT * 2, THUMB_HEIGHT))
        self.table.verticalHeader().setDefaultSectionSize(THUMB_HEIGHT + 4)
        header = self.table.horizontalHeader()
        for col in range(3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.problems = ProblemsView()
        self.test_label = QLabel()
        self.test_label.setWordWrap(True)
        test_button = QToolButton()
        test_button.setText("Set test data…")
        test_button.setToolTip("Use a separate folder or file as the test split instead of a held-out part")
        test_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(test_button)
        menu.addAction("Test data folder…", lambda: self.test_data_requested.emit("folder"))
        menu.addAction("Test data file…", lambda: self.test_data_requested.emit("file"))
        test_button.setMenu(menu)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test_label, 1)
        test_row.addWidget(test_button)
        layout = QVBoxLayout(page)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.title)
        layout.addWidget(self.summary)
        layout.addLayout(test_row)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.problems)
        return page

    # -- states ------------------------------------------------------------------
    def show_empty(self, recent: list[str]) -> None:
        self.set_recent(recent)
        self.stack.setCurrentIndex(0)

    def set_recent(self, recent: list[str]) -> None:
        self.recent_list.clear()
        for path, name in zip(recent, recent_names(recent)):
            item = QListWidgetItem(name)
            item.setData(Qt.ItemDataRole.UserRole, path)
            item.setToolTip(path)
            self.recent_list.addItem(item)
        self.recent_label.setVisible(bool(recent))
        self.recent_list.setVisible(bool(recent))
        self.recent_list.setMaximumHeight(8 + 22 * max(1, len(recent)))

    def show_loading(self, path: str) -> None:
        self.error.hide()
        self.loading_label.setText(f"Loading {display_name(path)}…")
        self.loading_bar.setRange(0, 0)
        self.stack.setCurrentIndex(1)

    def set_progress(self, done: int, total: int) -> None:
        """Images decoded so far (a folder dataset reports them; other formats load in one go)."""
        if total > 0:
            self.loading_bar.setRange(0, total)
            self.loading_bar.setValue(done)

    def show_error(self, message: str, previous_page: int) -> None:
        """Show a loading failure above the page that was visible before loading started."""
        self.error.setText(message)
        self.error.show()
        self.stack.setCurrentIndex(previous_page)

    def show_dataset(self, dataset: Dataset) -> None:
        """Fill the loaded page from a dataset and its report."""
        report = dataset.report
        self.error.hide()
        self.title.setText(f"<b style='font-size:12pt'>{html.escape(dataset.name)}</b>"
                           f"<br><span style='color:#666'>{html.escape(report.source)}</span>")
        h, w, c = report.image_shape
        self.summary.setText(
            f"{len(dataset.classes)} classes · {sum(report.train_counts):,} train · "
            f"{sum(report.test_counts):,} test · {h}×{w}×{c} · {format_bytes(report.memory_bytes)}")
        self.test_label.setText(f"<span style='color:#555'>Test data: {html.escape(report.test_source)}</span>")
        self.table.setRowCount(len(dataset.classes))
        for row, name in enumerate(dataset.classes):
            self.table.setItem(row, 0, QTableWidgetItem(str(name)))
            for col, counts in ((1, report.train_counts), (2, report.test_counts)):
                item = QTableWidgetItem(f"{counts[row]:,}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
            thumbs = QTableWidgetItem()
            thumbs.setData(Qt.ItemDataRole.DecorationRole, class_strip(dataset.x_train, dataset.y_train, row))
            self.table.setItem(row, 3, thumbs)
        self.problems.show_problems(report.problems, report.source)
        self.stack.setCurrentIndex(2)

    def page(self) -> int:
        return self.stack.currentIndex()
