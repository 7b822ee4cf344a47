"""Export targets: a non-empty folder is never replaced or nested silently (a question, default No),
and write failures are one sentence naming the folder and the fix, not ``[Errno 1] …``."""
from __future__ import annotations

import errno
import logging
import os

import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from engine import export
from dgkip_gui import open_dialog
from engine.export import load_distilled
from dgkip_gui.export_target import write_error_message

from gui_helpers import load, quick, run_to_end

pytestmark = pytest.mark.gui
No, Yes = QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes


@pytest.fixture
def questions(monkeypatch):
    """Record each QMessageBox.question (title, text, default button) and answer ``state["reply"]``."""
    state = {"reply": No, "asked": []}

    def question(parent, title, text, buttons, default):
        state["asked"].append((title, text, default))
        return state["reply"]

    monkeypatch.setattr(QMessageBox, "question", question)
    return state


@pytest.fixture
def finished(qtbot, window):
    load(qtbot, window)
    quick(window, steps=2)
    assert run_to_end(qtbot, window) == "finished"
    return window


def choose(monkeypatch, folder) -> None:
    monkeypatch.setattr(open_dialog, "choose_export_folder", lambda *args, **kwargs: str(folder))


def test_a_non_empty_folder_is_nested_only_when_confirmed(finished, tmp_path, monkeypatch, questions):
    window = finished
    folder = tmp_path / "Documents"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    choose(monkeypatch, folder)

    assert window.export_result() is None                              # answered No: nothing written
    title, text, default = questions["asked"][-1]
    assert default == No and str(folder) in text and "never replaced" in text
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]

    questions["reply"] = Yes
    target = window.export_result()
    assert target == folder / window.run_session.suggested_export_name()
    assert target.name in questions["asked"][-1][1]                     # the question named the subfolder
    assert load_distilled(target).images.shape[0] == 10
    assert (folder / "notes.txt").read_text() == "mine"
    assert window.export_result().name == f"{target.name}-2"             # never into the first one


def test_an_earlier_export_is_replaced_only_when_confirmed(finished, tmp_path, monkeypatch, questions):
    window = finished
    target = tmp_path / "out"
    target.mkdir()                                                       # empty: written into, no question
    choose(monkeypatch, target)
    assert window.export_result() == target and questions["asked"] == []
    marker = (target / "manifest.json").stat().st_mtime_ns

    assert window.export_result() is None
    title, text, default = questions["asked"][-1]
    assert default == No and title == "Replace the earlier export?" and str(target) in text
    assert (target / "manifest.json").stat().st_mtime_ns == marker and not (target / "out").exists()

    questions["reply"] = Yes
    assert window.export_result() == target
    assert (target / "manifest.json").stat().st_mtime_ns != marker
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


def test_a_file_is_refused(finished, tmp_path, qtbot, questions):
    window = finished
    file = tmp_path / "distilled"
    file.write_text("not a folder")
    with qtbot.waitSignal(window.error_shown) as shown:
        assert window.export_result(file) is None
    assert "is a file" in shown.args[0].message and file.read_text() == "not a folder"


def test_a_failed_export_names_the_folder_and_the_fix(finished, tmp_path, qtbot, monkeypatch, questions, caplog):
    window = finished
    target = tmp_path / "locked" / "digits"

    def refuse(result, where, overwrite=False):
        raise PermissionError(errno.EPERM, "Operation not permitted", f"{where}", f"{target.parent}/.digits.3f2a.old")

    monkeypatch.setattr(export, "export_distilled", refuse)
    with caplog.at_level(logging.WARNING, logger="dgkip_gui.sessions.run"):
        assert window.export_result(target) is None                     # "Choose another folder?" No
    (title, message, _), = questions["asked"]
    assert title == "Save the distilled set elsewhere?" and window.error_dialog is None
    assert str(target) in message and "permission denied" in message
    assert "Choose a folder you own" in message
    assert "Errno" not in message and ".old" not in message
    assert "Operation not permitted" in caplog.text                     # the raw error stays in the log
    assert "permission denied" in window.statusBar().currentMessage()


@pytest.mark.parametrize("code, words", [
    (errno.EACCES, "permission denied"), (errno.EPERM, "permission denied"), (errno.ENOSPC, "is full"),
    (errno.EROFS, "read-only disk"), (errno.ENAMETOOLONG, "too long"), (errno.EEXIST, "already exists"),
    (errno.ENOTEMPTY, "already exists"), (errno.ENOENT, "no longer exists")])
def test_write_errors_read_as_sentences(tmp_path, code, words):
    target = tmp_path / "exports" / "digits"
    raw = OSError(code, os.strerror(code), str(tmp_path / "exports" / ".digits.x1y2.partial"), str(target))
    message = write_error_message(raw, target, "the distilled set")
    assert message.startswith(f"Could not save the distilled set to {target}: ")
    assert words in message and "Errno" not in message and ".partial" not in message
    assert "Choose" in message or "choose" in message                   # the fix


def test_a_permission_error_names_the_folder_the_system_refused(tmp_path):
    target = tmp_path / "exports" / "digits"
    inside = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "exports" / ".digits.a1.partial"))
    assert write_error_message(inside, target, "the distilled set").endswith(
        f"get write permission for {tmp_path / 'exports'}.")
    moved = PermissionError(errno.EPERM, "Operation not permitted", str(target), str(target.parent / ".digits.old"))
    assert write_error_message(moved, target, "the distilled set").endswith(f"get write permission for {target}.")


def test_other_write_errors_keep_a_readable_reason(tmp_path):
    target = tmp_path / "digits"
    message = write_error_message(OSError(errno.EIO, "Input/output error"), target, "the plots")
    assert message == f"Could not save the plots to {target}: input/output error. Choose another folder."
    refusal = FileExistsError(f"{target} is a file — choose a folder name for the export")
    assert write_error_message(refusal, target, "the distilled set") == str(refusal)


def test_the_export_dialog_proposes_a_new_folder_and_accepts_a_typed_one(finished, tmp_path, qtbot):
    """The real dialog (Qt's own on every platform, open_dialog.ExportDialog): it opens on a new folder
    named after the run beside the last export, and a typed folder that does not exist yet is
    accepted and created (a folder chooser answered "Directory not found")."""
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication, QLineEdit

    window = finished
    window.store.set_folder("exports", tmp_path)
    seen = {}

    def type_and_accept():
        dialog = QApplication.activeModalWidget()
        seen["dialog"] = dialog
        if isinstance(dialog, QFileDialog):
            seen["proposed"] = dialog.selectedFiles()
            name = dialog.findChild(QLineEdit, "fileNameEdit")           # what a person types into
            name.clear()
            QTest.keyClicks(name, str(tmp_path / "typed"))
            QTest.keyClick(name, Qt.Key.Key_Return)
        elif dialog is not None:
            dialog.reject()

    def close_leftovers():              # a refusal ("Directory not found") fails the test instead of hanging it
        for _ in range(3):
            if QApplication.activeModalWidget() is not None:
                QApplication.activeModalWidget().reject()

    timers = [QTimer(window), QTimer(window)]           # owned: they die with the test's window
    for timer, delay, slot in zip(timers, (300, 1500), (type_and_accept, close_leftovers)):
        timer.setSingleShot(True)
        timer.timeout.connect(slot)
        timer.start(delay)
    try:
        target = window.export_result()
    finally:
        for timer in timers:
            timer.stop()
    assert isinstance(seen["dialog"], QFileDialog)
    assert seen["proposed"] == [str(tmp_path / window.run_session.suggested_export_name())]
    assert target == tmp_path / "typed" and load_distilled(target).images.shape[0] == 10


def test_proposed_export_names_are_plain_visible_folder_names():
    from engine.config import DistillConfig
    from dgkip_gui.sessions.run import export_name

    config = DistillConfig(ipc=10)
    assert export_name("digits (sample)", config) == "digits-sample-dgkip-cross-entropy-ipc10"
    assert export_name(".mnist", config) == "mnist-dgkip-cross-entropy-ipc10"        # not a hidden folder
    assert export_name("-- ..cifar.v2", config) == "cifar.v2-dgkip-cross-entropy-ipc10"
