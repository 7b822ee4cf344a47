"""GUI fixtures: an isolated settings store, the real main window, dialogs that never block, and an
autouse check that no job thread (nor time-estimate thread) outlives its test. Helpers live in ``gui_helpers.py``."""
from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QSettings, QStandardPaths
from PySide6.QtWidgets import QMessageBox

from dgkip_gui.main_window import MainWindow
from dgkip_gui.settings_store import SettingsStore
from dgkip_gui.worker import running_threads

QStandardPaths.setTestModeEnabled(True)   # logs and app data go to a test location, never the user's


@pytest.fixture(autouse=True)
def no_threads_left(qtbot):
    """Every job thread must have finished once the test (and its window's teardown) is done."""
    yield
    qtbot.waitUntil(lambda: running_threads() == 0, timeout=30_000)
    assert running_threads() == 0
    # the estimate's background step measurement (dgkip_gui.time_estimate) ends with its window
    qtbot.waitUntil(lambda: not any(t.name == "dgkip-time-estimate" for t in threading.enumerate()), timeout=30_000)


@pytest.fixture
def answer(monkeypatch) -> dict[str, QMessageBox.StandardButton]:
    """``QMessageBox.question`` answers ``answer["reply"]`` (Yes by default) and records the questions."""
    state = {"reply": QMessageBox.StandardButton.Yes, "asked": []}

    def question(parent, title, text, *args, **kwargs):
        state["asked"].append(title)
        return state["reply"]

    monkeypatch.setattr(QMessageBox, "question", question)
    return state


@pytest.fixture(autouse=True)
def choice(monkeypatch) -> dict:
    """``MainWindow.choose`` (questions with named answers, e.g. about an unexported result) answers
    ``choice["reply"]`` ("Discard" by default) and records (title, text) in ``choice["asked"]``."""
    state = {"reply": "Discard", "asked": []}

    def choose(self, title, text, answers):
        state["asked"].append((title, text))
        assert state["reply"] in answers, (state["reply"], answers)
        return state["reply"]

    monkeypatch.setattr(MainWindow, "choose", choose)
    return state


@pytest.fixture
def store(tmp_path) -> SettingsStore:
    return SettingsStore(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def make_window(qtbot, store, answer):
    """Build real main windows (optionally with an injected run function); closed after the test."""
    windows: list[MainWindow] = []

    def make(resize: bool = True, **kwargs) -> MainWindow:
        window = MainWindow(store, **kwargs)
        qtbot.addWidget(window)
        if resize:
            window.resize(1280, 820)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()   # the real close path: cancels a running job and closes once it ended
        qtbot.waitUntil(lambda: not window.busy, timeout=30_000)


@pytest.fixture
def window(make_window) -> MainWindow:
    return make_window()
