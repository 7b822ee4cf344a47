"""The About dialog and the error dialog (both with a button that copies their text)."""
from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QPlainTextEdit,
                               QPushButton, QStyle, QVBoxLayout, QWidget)

from dgkip_gui import APP_NAME
from dgkip_gui.widgets.elided import ElidedLabel
from dgkip_gui.errors import ErrorReport, is_expected
from dgkip_gui.logging_setup import log_path
from dgkip_gui.system_info import versions


def _monospace_view(text: str) -> QPlainTextEdit:
    view = QPlainTextEdit(text)
    view.setReadOnly(True)
    view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
    return view


class ErrorDialog(QDialog):
    """Shows an :class:`ErrorReport`: the message up front, the details (traceback, versions) below,
    and a "Copy details" button. Shown non-modally so it never blocks a running event loop. Bad input
    and environment limits (:func:`dgkip_gui.errors.is_expected`) get a warning icon and their details
    folded away behind "Show details": the message says what to fix, a traceback would read as a crash."""

    def __init__(self, report: ErrorReport, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.report = report
        self.setWindowTitle(report.title)
        expected = is_expected(report.exception)

        icon = QLabel()
        kind = QStyle.StandardPixmap.SP_MessageBoxWarning if expected else QStyle.StandardPixmap.SP_MessageBoxCritical
        icon.setPixmap(self.style().standardIcon(kind).pixmap(40, 40))
        self.message = QLabel(f"<b>{html.escape(report.title)}</b><br>{html.escape(report.message)}")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bold = QFont(self.message.font())
        bold.setPointSizeF(bold.pointSizeF() * 1.1)
        self.message.setFont(bold)
        head = QHBoxLayout()
        head.addWidget(icon)
        head.addWidget(self.message, 1)

        self.details = _monospace_view(self.details_text())
        self.details_label = QLabel("Details:")
        self.copy_button = QPushButton("Copy details")
        self.copy_button.clicked.connect(self.copy_details)
        self.details_button = QPushButton("Show details")
        self.details_button.setCheckable(True)
        self.details_button.toggled.connect(self.show_details)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        if expected:
            buttons.addButton(self.details_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(self.details_label)
        layout.addWidget(self.details, 1)
        layout.addWidget(buttons)
        self.show_details(not expected)
        self.resize(640, 420 if not expected else self.sizeHint().height())

    def show_details(self, shown: bool) -> None:
        """Unfold (or fold away) the traceback and versions."""
        self.details_label.setVisible(shown)
        self.details.setVisible(shown)
        self.details_button.setText("Hide details" if shown else "Show details")
        if shown and self.height() < 420:
            self.resize(max(self.width(), 640), 420)

    def details_text(self) -> str:
        """Everything a bug report needs: message, traceback, versions and the log file."""
        path = log_path()
        log_line = f"\nLog file: {path}" if path else ""
        return f"{self.report.message}\n\n{self.report.details}{log_line}"

    def copy_details(self) -> None:
        QGuiApplication.clipboard().setText(self.details_text())
        self.copy_button.setText("Copied")


class AboutDialog(QDialog):
    """Versions of the app, engine, Python, torch, CUDA/device, Qt, PySide6 and pyqtgraph."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"About {APP_NAME}")
        info = versions()
        title = QLabel(f"<h2>{APP_NAME} {info['DGKIP Studio']}</h2>"
                       "<p>Certified dataset distillation by duality-gap kernel inducing points.</p>")
        title.setWordWrap(True)
        self.text = "\n".join(f"{name}: {value}" for name, value in info.items())
        path = log_path()
        if path:
            self.text += f"\nlog file: {path}"
        self.log_label = ElidedLabel(f"Log file: {path}" if path else "No log file (no writable folder)",
                                     mode=Qt.TextElideMode.ElideMiddle)
        self.log_label.setToolTip(str(path or ""))
        view = _monospace_view(self.text)
        view.setMinimumSize(520, 240)
        self.copy_button = QPushButton("Copy")
        self.copy_button.clicked.connect(self.copy)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(view, 1)
        layout.addWidget(self.log_label)
        layout.addWidget(buttons)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text)
        self.copy_button.setText("Copied")
