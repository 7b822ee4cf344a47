"""A one-line label that never widens its layout: text beyond its width ends in "…" (or starts with it,
for paths, whose end matters most) and the whole text is its tooltip."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class ElidedLabel(QLabel):
    """Plain text on one line, elided to the label's width (``mode``: where the "…" goes). ``text()``
    returns the full text; the tooltip holds it whenever part of it is hidden."""

    def __init__(self, text: str = "", parent: QWidget | None = None,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight) -> None:
        super().__init__(parent)
        self._full = ""
        self._mode = mode
        self._tooltip = ""
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(40)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self._full = text
        self._elide()

    def text(self) -> str:
        return self._full

    def setToolTip(self, tip: str) -> None:  # noqa: N802 - Qt's name
        """An explicit tooltip (shown always, with the full text above it when that is elided)."""
        self._tooltip = tip
        self._elide()

    def shown_text(self) -> str:
        """What is drawn (the full text, or its elided form)."""
        return super().text()

    def is_elided(self) -> bool:
        return self.shown_text() != self._full

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(self.contentsRect().width(), 1)
        shown = self.fontMetrics().elidedText(self._full, self._mode, width)
        super().setText(shown)
        tips = [t for t in (self._full if shown != self._full else "", self._tooltip) if t]
        super().setToolTip("\n\n".join(tips))
