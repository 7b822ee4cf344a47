"""File › Open (Ctrl+O) opens dataset files and dataset folders; Ctrl+Shift+O the folder chooser."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QFileDialog, QLineEdit

from dgkip_gui import open_dialog
from dgkip_gui.open_dialog import DatasetDialog

from gui_helpers import RUN_TIMEOUT_MS, image_folder, load

pytestmark = pytest.mark.gui


@pytest.fixture
def datasets(tmp_path):
    """A folder holding an image-folder dataset and an .npz dataset."""
    folder = image_folder(tmp_path / "shapes", {"circle": 5, "square": 5})
    rng = np.random.default_rng(1)
    npz = tmp_path / "blobs.npz"
    np.savez(npz, x=rng.integers(0, 255, (30, 6, 6), dtype=np.uint8), y=np.arange(30) % 3)
    return tmp_path, folder, npz


def dialog_in(qtbot, where) -> DatasetDialog:
    dialog = DatasetDialog(None, "Open", str(where))
    qtbot.addWidget(dialog)
    return dialog


def type_name(dialog: DatasetDialog, text: str) -> None:
    dialog.findChild(QLineEdit, "fileNameEdit").setText(text)


def test_dataset_dialog_takes_a_folder_or_a_file(qtbot, datasets):
    root, folder, npz = datasets
    for name, expected in (("shapes", folder), ("blobs.npz", npz)):
        dialog = dialog_in(qtbot, root)
        type_name(dialog, name)
        dialog.accept()
        assert dialog.result() == QDialog.DialogCode.Accepted and dialog.chosen == str(expected)

    dialog = dialog_in(qtbot, folder)          # inside the dataset folder: "Open this folder"
    assert dialog.testOption(QFileDialog.Option.DontUseNativeDialog)
    dialog.here_button.click()
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.chosen == str(folder)

    for moving in ("..", "shapes/"):            # typed navigation moves, it does not choose
        dialog = dialog_in(qtbot, root)
        type_name(dialog, moving)
        dialog.accept()
        assert dialog.result() == QDialog.DialogCode.Rejected and dialog.chosen is None


def test_export_dialog_takes_a_new_name_or_an_existing_folder(qtbot, tmp_path):
    """ExportDialog: the proposal is selected; a typed new name and a typed existing folder are both
    chosen (a save dialog enters the folder instead); *Export here* takes the folder shown."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("mine")

    def exporting() -> open_dialog.ExportDialog:
        dialog = open_dialog.ExportDialog(None, "Export", tmp_path / "digits-dgkip-ipc1")
        qtbot.addWidget(dialog)
        return dialog

    dialog = exporting()
    assert dialog.selectedFiles() == [str(tmp_path / "digits-dgkip-ipc1")]
    assert dialog.testOption(QFileDialog.Option.DontUseNativeDialog)
    for name, expected in (("digits-dgkip-ipc1", tmp_path / "digits-dgkip-ipc1"), ("empty", tmp_path / "empty"),
                           (str(tmp_path / "new" / "deeper"), tmp_path / "new" / "deeper"),
                           ("notes.txt", tmp_path / "notes.txt")):     # a file: chosen, refused later
        dialog = exporting()
        type_name(dialog, name)
        dialog.accept()
        assert dialog.result() == QDialog.DialogCode.Accepted and dialog.chosen == str(expected)
    dialog = exporting()
    dialog.here_button.click()
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.chosen == str(tmp_path)
    dialog = exporting()
    type_name(dialog, "..")                     # typed navigation moves, it does not choose
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Rejected and dialog.chosen is None


def test_ctrl_o_opens_folders_and_files(qtbot, window, datasets, monkeypatch):
    root, folder, npz = datasets
    picked = iter([str(folder), str(npz)])
    asked = []

    def choose(parent, caption, directory):
        asked.append(caption)
        return next(picked)

    monkeypatch.setattr(open_dialog, "choose_dataset", choose)
    for expected in (["circle", "square"], [0, 1, 2]):
        with qtbot.waitSignal(window.dataset_loaded, timeout=RUN_TIMEOUT_MS) as loaded:
            qtbot.keyClick(window, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
        assert [str(c) for c in loaded.args[0].classes] == [str(c) for c in expected]
    assert len(asked) == 2 and "file or folder" in asked[0]
    assert window.store.recent()[:2] == [str(npz), str(folder)]


def test_ctrl_shift_o_opens_the_folder_chooser(qtbot, window, datasets, monkeypatch):
    _, folder, _ = datasets
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(folder))
    with qtbot.waitSignal(window.dataset_loaded, timeout=RUN_TIMEOUT_MS):
        qtbot.keyClick(window, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert window.load_session.path == str(folder)


def test_a_dataset_named_like_markup_reads_as_its_name_with_grouped_counts(qtbot, window, tmp_path):
    """The panel's title and source are plain text (a file named "<b>a&b.npz" was read as markup),
    and its counts are grouped like the table's ("1,200 train")."""
    rng = np.random.default_rng(0)
    path = tmp_path / "<i>a&b.npz"
    np.savez(path, x=rng.integers(0, 256, (1500, 4, 4), dtype=np.uint8), y=np.arange(1500) % 2)
    load(qtbot, window, path)
    panel = window.dataset_panel
    assert "&lt;i&gt;a&amp;b" in panel.title.text() and "<i>" not in panel.title.text()
    assert panel.summary.text().startswith("2 classes · 1,200 train · 300 test")


def test_the_dataset_dialog_shows_sizes_and_types_whole(qtbot, tmp_path):
    """In the detail view the size, type and date columns fit their contents (sizes read "27....MiB")
    and the name takes the rest: no column runs past the view."""
    from PySide6.QtWidgets import QHeaderView, QTreeView
    (tmp_path / "cifar10-train-1.npz").write_bytes(b"x" * 1000)
    dialog = DatasetDialog(None, "Open", str(tmp_path))
    qtbot.addWidget(dialog)
    dialog.setViewMode(QFileDialog.ViewMode.Detail)
    dialog.show()
    qtbot.waitExposed(dialog)
    header = dialog.findChild(QTreeView, "treeView").header()
    modes = [header.sectionResizeMode(i) for i in range(header.count())]
    assert modes[0] == QHeaderView.ResizeMode.Stretch
    assert set(modes[1:]) == {QHeaderView.ResizeMode.ResizeToContents}
    qtbot.waitUntil(lambda: header.length() <= header.viewport().width() + 1)
