"""Qt's own file dialogs that can choose a folder, where a native one would enter it or refuse it.

A dataset is a folder (one subfolder per class, IDX files, CIFAR batches) or a file (``.npz``, an IDX
or CIFAR file). Native file dialogs pick files *or* folders, never either, so File › Open (Ctrl+O) uses
Qt's own dialog (:class:`DatasetDialog`): *Open* takes the selected file or folder (double-click still
enters a folder), and *Open this folder* takes the folder being shown. File › Open folder
(Ctrl+Shift+O, napari's shortcut) keeps the platform's native folder chooser.

An export goes to a folder that may not exist yet: a folder chooser refuses a typed new name and a
save dialog enters an existing folder instead of returning it, so Export (Ctrl+E) uses
:class:`ExportDialog`, which takes either, and *Export here* for the folder being shown.
"""
from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QHeaderView, QLineEdit, QPushButton, QTreeView,
                               QWidget)

DATASET_FILES = "NumPy archives (*.npz);;MNIST IDX or CIFAR batches (*ubyte* *batch*);;All files (*)"
NAVIGATE = ("", ".", "..")      # typed names that move around instead of choosing


class _FolderChoosingDialog(QFileDialog):
    """Qt's (non-native) dialog whose *accept* takes an existing folder named in its name field instead
    of entering it (double-click still enters), and whose extra button takes the folder being shown.

    ``chosen`` holds the absolute path once the dialog was accepted, else ``None``."""

    def __init__(self, parent: QWidget | None, caption: str, directory: str, filters: str,
                 here: tuple[str, str]) -> None:
        super().__init__(parent, caption, directory, filters)
        self.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        self.chosen: str | None = None
        self.here_button: QPushButton | None = None
        box = self.findChild(QDialogButtonBox, "buttonBox")
        if box is not None:       # the non-native dialog's own button box (qfiledialog.ui)
            self.here_button = box.addButton(here[0], QDialogButtonBox.ButtonRole.ActionRole)
            self.here_button.setToolTip(here[1])
            self.here_button.clicked.connect(self.open_current_folder)
        details = self.findChild(QTreeView, "treeView")
        if details is not None:   # the detail view: sizes and types whole ("27....MiB" at its default width)
            header = details.header()
            header.setStretchLastSection(False)
            header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)        # the name takes the rest
            for column in range(1, header.count()):
                header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)

    def typed_name(self) -> str:
        """The text of the file name field (what the accept button acts on)."""
        edit = self.findChild(QLineEdit, "fileNameEdit")
        return edit.text().strip() if edit is not None else ""

    def accept(self) -> None:
        """Take a selected folder (Qt's file modes would enter it); anything else as Qt does."""
        typed = self.typed_name()
        files = self.selectedFiles()
        navigating = typed in NAVIGATE or typed.endswith(("/", os.sep))
        if len(files) == 1 and not navigating and Path(files[0]).is_dir():
            self._choose(files[0])
            return
        super().accept()
        if self.result() == QDialog.DialogCode.Accepted and self.selectedFiles():
            self.chosen = str(Path(self.selectedFiles()[0]).absolute())

    def open_current_folder(self) -> None:
        """Take the folder the dialog shows."""
        self._choose(self.directory().absolutePath())

    def _choose(self, path: str) -> None:
        self.chosen = str(Path(path).absolute())
        QDialog.accept(self)      # not QFileDialog.accept, which enters folders


class DatasetDialog(_FolderChoosingDialog):
    """The open dialog: an existing file or an existing folder."""

    def __init__(self, parent: QWidget | None, caption: str, directory: str) -> None:
        super().__init__(parent, caption, directory, DATASET_FILES,
                         ("Open this &folder", "Open the folder shown above as the dataset"))
        self.setFileMode(QFileDialog.FileMode.ExistingFile)
        self.setAcceptMode(QFileDialog.AcceptMode.AcceptOpen)
        self.setLabelText(QFileDialog.DialogLabel.FileName, "File or folder:")
        self.setLabelText(QFileDialog.DialogLabel.Accept, "&Open")


class ExportDialog(_FolderChoosingDialog):
    """The export dialog: a new folder (created by the export) or an existing one, opened on
    ``proposal`` (its name selected, ready to be typed over)."""

    def __init__(self, parent: QWidget | None, caption: str, proposal: Path) -> None:
        super().__init__(parent, caption, str(proposal.parent), "All files (*)",
                         ("Export &here", "Export into the folder shown above"))
        self.setFileMode(QFileDialog.FileMode.AnyFile)
        self.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        self.setOption(QFileDialog.Option.DontConfirmOverwrite, True)
        self.setLabelText(QFileDialog.DialogLabel.FileName, "Folder:")
        self.setLabelText(QFileDialog.DialogLabel.Accept, "&Export")
        self.selectFile(proposal.name)


def _ask(dialog: _FolderChoosingDialog) -> str | None:
    """Run ``dialog``: the chosen path, or ``None`` when cancelled."""
    try:
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        return dialog.chosen
    finally:
        dialog.deleteLater()


def choose_dataset(parent: QWidget | None, caption: str, directory: str) -> str | None:
    """Ask for a dataset file or folder, starting in ``directory``; ``None`` when cancelled."""
    return _ask(DatasetDialog(parent, caption, directory))


def choose_export_folder(parent: QWidget | None, caption: str, proposal: Path) -> str | None:
    """Ask for the export folder, proposing ``proposal``; ``None`` when cancelled."""
    return _ask(ExportDialog(parent, caption, proposal))
