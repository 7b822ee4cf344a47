"""One chooser for a dataset that may be a file or a folder.

A dataset is a folder (one subfolder per class, IDX files, CIFAR batches) or a file (``.npz``, an IDX
or CIFAR file). Native file dialogs pick files *or* folders, never either, so File › Open (Ctrl+O) uses
Qt's own dialog: *Open* takes the selected file or folder (double-click still enters a folder), and
*Open this folder* takes the folder being shown. File › Open folder (Ctrl+Shift+O, napari's shortcut)
keeps the platform's native folder chooser.
"""
from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFileDialog, QLineEdit, QPushButton, QWidget

DATASET_FILES = "NumPy archives (*.npz);;MNIST IDX or CIFAR batches (*ubyte* *batch*);;All files (*)"
NAVIGATE = ("", ".", "..")      # typed names that move around instead of choosing


class DatasetDialog(QFileDialog):
    """Qt's (non-native) open dialog that accepts an existing file or an existing folder.

    ``chosen`` holds the absolute path once the dialog was accepted, else ``None``.
    """

    def __init__(self, parent: QWidget | None, caption: str, directory: str) -> None:
        super().__init__(parent, caption, directory, DATASET_FILES)
        self.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        self.setFileMode(QFileDialog.FileMode.ExistingFile)
        self.setAcceptMode(QFileDialog.AcceptMode.AcceptOpen)
        self.setLabelText(QFileDialog.DialogLabel.FileName, "File or folder:")
        self.setLabelText(QFileDialog.DialogLabel.Accept, "&Open")
        self.chosen: str | None = None
        self.here_button: QPushButton | None = None
        box = self.findChild(QDialogButtonBox, "buttonBox")
        if box is not None:       # the non-native dialog's own button box (qfiledialog.ui)
            self.here_button = box.addButton("Open this &folder", QDialogButtonBox.ButtonRole.ActionRole)
            self.here_button.setToolTip("Open the folder shown above as the dataset")
            self.here_button.clicked.connect(self.open_current_folder)

    def typed_name(self) -> str:
        """The text of the file name field (what *Open* acts on)."""
        edit = self.findChild(QLineEdit, "fileNameEdit")
        return edit.text().strip() if edit is not None else ""

    def accept(self) -> None:
        """Take a selected folder as the dataset (Qt's file mode would enter it); files as usual."""
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
        """Take the folder the dialog shows as the dataset."""
        self._choose(self.directory().absolutePath())

    def _choose(self, path: str) -> None:
        self.chosen = str(Path(path).absolute())
        QDialog.accept(self)      # not QFileDialog.accept, which enters folders


def choose_dataset(parent: QWidget | None, caption: str, directory: str) -> str | None:
    """Ask for a dataset file or folder, starting in ``directory``; ``None`` when cancelled."""
    dialog = DatasetDialog(parent, caption, directory)
    try:
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        return dialog.chosen
    finally:
        dialog.deleteLater()
