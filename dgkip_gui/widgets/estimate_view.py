"""The run estimate under the settings form: one line (peak memory, rough time, whether it fits), the
full breakdown on demand, and, for a run that will be refused, its alternatives as one-click buttons.

It shows a :class:`engine.plan.RunEstimate`; clicking an alternative emits ``change_requested``
with the config field changes (``RunEstimate.changes``) and the form applies them.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

from engine.plan import RunEstimate, format_seconds
from engine.data.report import format_bytes
from dgkip_gui.widgets.elided import ElidedLabel

FITS, REFUSED = "#1e6b2e", "#b3261e"


def summary_line(estimate: RunEstimate) -> str:
    """``"Estimated memory 64.0 MiB, about 20 s · fits the memory budget (4.00 GiB)"`` or
    ``"Will not fit: about 12.0 GiB at the distillation step stage, over 4.00 GiB"``."""
    if not estimate.fits:
        return (f"Will not fit: about {format_bytes(estimate.memory_bytes)} at the {estimate.peak_stage} "
                f"stage, over {format_bytes(estimate.limit_bytes or estimate.budget_bytes)}")
    text = f"Estimated memory {format_bytes(estimate.memory_bytes)}"
    if estimate.seconds_hint is not None:
        text += f", {format_seconds(estimate.seconds_hint)}"
    text += f" · fits the memory budget ({format_bytes(estimate.budget_bytes)})"
    if estimate.teacher == "nystrom":
        text += f" · Nyström teacher, {estimate.centres:,} centres"
    return text


class EstimateView(QWidget):
    """One coloured line with a "Details" toggle, the details, and the alternatives of a refusal."""
    change_requested = Signal(str, object)     # button label, dict of DistillConfig field changes

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.estimate: RunEstimate | None = None
        self.line = ElidedLabel()
        self.details_button = QToolButton(text="Details")
        self.details_button.setCheckable(True)
        self.details_button.setAutoRaise(True)
        self.details_button.setToolTip("Show the memory of each stage and the full explanation")
        self.details_button.toggled.connect(self._show_details)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.PlainText)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setStyleSheet("color: #333;")
        self.details.hide()
        self.fixes_title = QLabel("Distil is off. Make the run fit (changes the form):")
        self.fixes = QVBoxLayout()
        self.fixes.setSpacing(2)
        self.buttons: list[QPushButton] = []
        self._changes: dict[QPushButton, tuple[str, dict[str, Any]]] = {}
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.line, 1)
        row.addWidget(self.details_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addWidget(self.details)
        layout.addWidget(self.fixes_title)
        layout.addLayout(self.fixes)
        self.clear()

    @property
    def refusal(self) -> str | None:
        """Why Distil is off (the summary line of a refused run), or ``None`` when the run fits."""
        return summary_line(self.estimate) if self.estimate is not None and not self.estimate.fits else None

    def clear(self) -> None:
        """No estimate (no dataset yet, or the form holds an invalid value)."""
        self.estimate = None
        self.line.setText("")
        self.details.setText("")
        self._set_buttons(())
        self.setVisible(False)

    def show_estimate(self, estimate: RunEstimate) -> None:
        self.estimate = estimate
        self.line.setText(summary_line(estimate))
        self.line.setStyleSheet(f"color: {FITS if estimate.fits else REFUSED};"
                                + ("" if estimate.fits else " font-weight: bold;"))
        teacher = f"\n\nTeacher: {estimate.teacher_reason}." if estimate.teacher_reason else ""
        self.details.setText(f"{estimate.message}{teacher}\n\n{estimate.details()}")
        self._set_buttons(estimate.changes if not estimate.fits else ())
        self.setVisible(True)

    def _set_buttons(self, changes: tuple[tuple[str, dict[str, Any]], ...]) -> None:
        for button in self.buttons:
            self.fixes.removeWidget(button)
            button.deleteLater()
        self.buttons, self._changes = [], {}
        for label, fields in changes:
            button = QPushButton(label)
            button.setToolTip("Set " + ", ".join(f"{name} = {value!r}" for name, value in fields.items())
                              + " in the form (Undo restores it)")
            button.clicked.connect(self._clicked)     # a bound method: no reference cycle through a lambda
            self._changes[button] = (label, fields)
            self.fixes.addWidget(button)
            self.buttons.append(button)
        self.fixes_title.setVisible(bool(changes))

    def _clicked(self) -> None:
        label, fields = self._changes[self.sender()]
        self.change_requested.emit(label, dict(fields))

    def _show_details(self, shown: bool) -> None:
        self.details.setVisible(shown)
        self.details_button.setText("Hide details" if shown else "Details")
