"""Datasets dropped onto the window (synthesized drag-and-drop events with file URLs)."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QWidget

from gui_helpers import RUN_TIMEOUT_MS, image_folder, load

pytestmark = pytest.mark.gui


def drop(target: QWidget, path: Path) -> bool:
    """Drag ``path`` over ``target`` and drop it there; return whether the drag was accepted."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    centre = QPointF(target.rect().center())
    enter = QDragEnterEvent(centre, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, enter)
    if not enter.isAccepted():
        return False
    event = QDropEvent(centre, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, event)
    return event.isAccepted()


@pytest.mark.parametrize("where", ["window", "image grid"])
def test_dropping_a_folder_loads_it(qtbot, window, tmp_path, where):
    folder = image_folder(tmp_path / "shapes", {"circle": 6, "square": 7})
    target = window if where == "window" else window.grid.view.viewport()
    with qtbot.waitSignal(window.dataset_loaded, timeout=RUN_TIMEOUT_MS) as loaded:
        assert drop(target, folder)
    dataset = loaded.args[0]
    assert dataset.classes == ["circle", "square"]
    assert window.dataset_panel.table.rowCount() == 2
    assert window.dataset_panel.table.item(1, 0).text() == "square"
    assert [window.settings.class_list.item(i).text() for i in range(2)] == ["circle", "square"]
    assert window.store.recent()[0] == str(folder)
    assert "shapes" in window.windowTitle()


def test_dropping_a_bad_folder_explains_and_stays_usable(qtbot, window, tmp_path):
    bad = tmp_path / "notes"
    bad.mkdir()
    (bad / "readme.txt").write_text("not an image")
    assert drop(window, bad)                         # the load starts once the drop has returned
    qtbot.waitUntil(lambda: window.dataset_panel.error.isVisible() and not window.busy, timeout=RUN_TIMEOUT_MS)
    assert "notes" in window.dataset_panel.error.text()
    assert window.error_dialog is None, "bad input is explained inline, not as a crash"
    assert window.dataset is None and not window.act_run.isEnabled()
    assert window.dataset_panel.page() == 0

    load(qtbot, window)                              # the app is still usable
    assert window.dataset is not None and not window.dataset_panel.error.isVisible()


def test_drag_without_files_is_refused(window):
    mime = QMimeData()
    mime.setText("just text")
    enter = QDragEnterEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert not enter.isAccepted()
