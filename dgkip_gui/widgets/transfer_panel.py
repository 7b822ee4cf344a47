"""The "Transfer" results tab: which exported set is open, and how finite networks trained on it score
on the real test set (one row per network, mean ± std over seeds), live while a transfer runs.

The table mirrors ``manifest.json["transfer"]`` (written by :func:`engine.transfer.exported.transfer_exported`,
one :meth:`engine.transfer.TransferSummary.to_dict` per network) and can be copied or saved as CSV.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QSizePolicy, QTableWidget,
                               QTableWidgetItem, QToolButton, QVBoxLayout, QWidget)

from engine.export import read_manifest
from engine.transfer import TransferProgress, TransferScore, TransferSummary
from dgkip_gui.widgets.elided import ElidedLabel
from dgkip_gui.transfer_dialog import TransferOptions, network_title
from dgkip_gui.widgets.run_panel import format_duration

COLUMNS = ("Network", "Test accuracy", "Seeds", "Epochs", "Seconds")
CSV_COLUMNS = ("network", "mean_accuracy", "std_accuracy", "seeds", "epochs", "seconds", "accuracies")


@dataclass(frozen=True)
class ExportInfo:
    """What the window needs to know about an exported distilled set."""
    path: Path
    data: str                   # the dataset the run used (config.data)
    test_data: str | None       # its explicit test split, if any
    classes: list[str]
    n_images: int
    transfer: dict[str, Any]    # manifest["transfer"], {} before any transfer

    @classmethod
    def read(cls, path: str | Path) -> "ExportInfo":
        """Open an export folder; raises :class:`engine.data.DatasetError` when it is not one."""
        folder, manifest, config = read_manifest(path)        # the arrays are not needed here
        transfer = manifest.get("transfer")
        return cls(folder, config.data, config.test_data, [str(c) for c in manifest.get("classes", [])],
                   int(manifest.get("n_images", 0)), transfer if isinstance(transfer, dict) else {})


@dataclass
class _Row:
    """One network's accuracies in [0, 1] (one per finished seed) and the time they took."""
    network: str
    accuracies: list[float]
    seeds: int | None           # planned seeds while training, None once final
    epochs: int | None
    seconds: float

    @classmethod
    def from_summary(cls, network: str, summary: Any) -> "_Row | None":
        """A row from a manifest entry; None for an entry this version cannot read."""
        try:
            accuracies = [float(a) for a in summary["accuracies"]]
            epochs = summary.get("recipe", {}).get("epochs")
            return cls(network, accuracies, None, int(epochs) if epochs is not None else None,
                       float(summary.get("seconds", 0.0)))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def accuracy_text(accuracies: list[float]) -> str:
    """``[0.9, 0.92]`` → ``"91.00 ± 1.00 %"`` (population std, as the engine reports it); one seed has no
    spread: ``[0.9]`` → ``"90.00 %"``."""
    if not accuracies:
        return "…"
    if len(accuracies) < 2:
        return f"{100 * accuracies[0]:.2f} %"
    return f"{100 * np.mean(accuracies):.2f} ± {100 * np.std(accuracies):.2f} %"


class TransferTable(QTableWidget):
    """One row per network: mean ± std test accuracy, seeds, epochs per seed and seconds.
    Ctrl+C copies the table as tab-separated text (pastes into a spreadsheet)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.verticalHeader().hide()
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAlternatingRowColors(True)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self._rows: dict[str, _Row] = {}

    # model -------------------------------------------------------------------
    def show_summaries(self, transfer: dict[str, Any]) -> None:
        """Show a manifest's ``transfer`` entry (unreadable entries are skipped)."""
        rows = (_Row.from_summary(name, summary) for name, summary in transfer.items())
        self._rows = {row.network: row for row in rows if row is not None}
        self._render()

    def begin(self, options: TransferOptions) -> None:
        """A transfer starts: one empty row per network to train."""
        self._rows = {name: _Row(name, [], options.seeds, options.epochs_of(name), 0.0) for name in options.networks}
        self._render()

    def add_score(self, score: TransferScore) -> None:
        row = self._rows.get(score.network)
        if row is not None:
            row.accuracies.append(score.test_accuracy)
            row.seconds += score.seconds
            self._render()

    def add_summary(self, summary: TransferSummary) -> None:
        row = _Row.from_summary(summary.network, summary.to_dict())
        if row is not None:
            self._rows[summary.network] = row
            self._render()

    def accuracies(self) -> dict[str, list[float]]:
        """Per network, the accuracies in [0, 1] shown."""
        return {name: list(row.accuracies) for name, row in self._rows.items()}

    # view --------------------------------------------------------------------
    def _render(self) -> None:
        self.setRowCount(len(self._rows))
        for r, row in enumerate(self._rows.values()):
            seeds = str(len(row.accuracies)) if row.seeds is None else f"{len(row.accuracies)} of {row.seeds}"
            cells = (network_title(row.network), accuracy_text(row.accuracies), seeds,
                     "" if row.epochs is None else f"{row.epochs:,}", f"{row.seconds:.1f}")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if c == 1 and row.accuracies:
                    item.setToolTip("Per seed: " + ", ".join(f"{100 * a:.2f} %" for a in row.accuracies))
                self.setItem(r, c, item)

    def text_rows(self) -> list[list[str]]:
        """The header and every row as shown."""
        return [list(COLUMNS)] + [[self.item(r, c).text() for c in range(self.columnCount())]
                                  for r in range(self.rowCount())]

    def copy(self) -> None:
        """Put the table on the clipboard as tab-separated text."""
        QGuiApplication.clipboard().setText("\n".join("\t".join(row) for row in self.text_rows()) + "\n")

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.matches(QKeySequence.StandardKey.Copy):
            self.copy()
        else:
            super().keyPressEvent(event)

    def write_csv(self, path: str | Path) -> Path:
        """Save the rows as CSV with accuracies as fractions in [0, 1] (``accuracies`` joined by ";")."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in self._rows.values():
            mean, std = (float(np.mean(row.accuracies)), float(np.std(row.accuracies))) if row.accuracies else ("", "")
            writer.writerow([row.network, mean, std, len(row.accuracies), row.epochs or "", f"{row.seconds:.3f}",
                             ";".join(f"{a:.6f}" for a in row.accuracies)])
        path = Path(path)
        path.write_text(buffer.getvalue(), encoding="utf-8")
        return path


class TransferPanel(QWidget):
    """The open export (path, classes), buttons for the window's transfer/export actions, the
    :class:`TransferTable` and a one-line note (what the numbers are, or why there are none)."""

    def __init__(self, actions: list[QAction], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = ElidedLabel(mode=Qt.TextElideMode.ElideMiddle)    # a path: both ends matter
        self.table = TransferTable()
        self.note = _line_label()
        copy = QToolButton(text="Copy")
        copy.setToolTip("Copy the table as tab-separated text (Ctrl+C in the table)")
        copy.clicked.connect(self.table.copy)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        for action in actions:      # text only (the icons would widen the results column past a small screen)
            button = QToolButton()
            button.setDefaultAction(action)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(copy)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.source)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.note)
        self.show_export(None)

    def set_note(self, text: str) -> None:
        """The line under the table (its tooltip holds the whole text when the panel is narrow)."""
        self.note.setText(text)
        self.note.setToolTip(text)

    def show_export(self, info: ExportInfo | None) -> None:
        """Show an opened export and its saved results (``None``: nothing opened yet)."""
        if info is None:
            self.source.setText("No distilled set yet: export a run (Ctrl+E), or open an exported set.")
            self.table.show_summaries({})
            self.set_note("Transfer trains networks from scratch on the distilled images and tests them on real data.")
            return
        self.source.setText(f"{info.path.name} — {info.n_images} images, {len(info.classes)} classes · "
                            f"{info.path.parent}")
        self.source.setToolTip(str(info.path))
        self.table.show_summaries(info.transfer)
        self.set_note("Accuracy on the real test set (mean ± std over seeds when there are several); saved in "
                      "manifest.json."
                      if info.transfer else "No transfer yet: press Transfer… (Ctrl+T).")


def _line_label() -> QLabel:
    """A one-line label that never widens its panel (text beyond the width is clipped)."""
    label = QLabel()
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    return label


def summary_text(accuracies: dict[str, list[float]]) -> str:
    """``"MLP 91.00 ± 1.00 % · ConvNet-3 …"`` for the networks with at least one accuracy."""
    return " · ".join(f"{network_title(name)} {accuracy_text(values)}"
                      for name, values in accuracies.items() if values)


def progress_text(event: TransferProgress, seeds: int, eta_s: float | None) -> str:
    """``"Training MLP · seed 2/3 · epoch 45/100 · ETA 0:12"`` (seed 1-based)."""
    text = (f"Training {network_title(event.network)} · seed {event.seed + 1}/{seeds} · "
            f"epoch {event.epoch:,}/{event.epochs:,}")
    return text + (f" · ETA {format_duration(eta_s)}" if eta_s is not None else "")
