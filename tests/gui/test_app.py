"""Entry points, the About dialog, logging, shortcuts and the status bar."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from PySide6.QtGui import QGuiApplication, QKeySequence

from dgkip_gui import app, logging_setup
from dgkip_gui.dialogs import AboutDialog

pytestmark = pytest.mark.gui
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def process_globals(monkeypatch):
    """``app.main`` sets process-wide state (hooks, logging, torch threads): undo it after the test."""
    root = logging.getLogger()
    before = list(root.handlers)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    monkeypatch.setattr(root, "handlers", list(before))
    monkeypatch.setattr(logging_setup, "_state", {})
    threads = torch.get_num_threads()
    yield
    for handler in root.handlers:
        if handler not in before:
            handler.close()
    torch.set_num_threads(threads)


def test_self_test_entry_point(qtbot, capsys, process_globals):
    assert app.main(["--self-test"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("self-test OK") and "10 images exported and verified" in out


def test_no_display_exits_2_with_a_clear_message():
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([sys.executable, "-m", "dgkip_gui"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert "no display found; use --self-test or set QT_QPA_PLATFORM=offscreen" in proc.stderr


def test_about_dialog_lists_versions_and_copies(qtbot):
    dialog = AboutDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    for name in ("Python", "torch", "CUDA", "device", "Qt", "PySide6", "pyqtgraph", "DGKIP Studio"):
        assert f"{name}:" in dialog.text
    dialog.copy_button.click()
    assert QGuiApplication.clipboard().text() == dialog.text


def test_shortcuts(window):
    def keys(action):
        return {s.toString() for s in action.shortcuts()}
    assert keys(window.act_open) == {QKeySequence(QKeySequence.StandardKey.Open).toString()}
    assert keys(window.act_run) == {"Ctrl+R", "F5"}
    assert keys(window.act_pause) == {"Space"}
    assert keys(window.act_stop) == {"Esc"}
    assert keys(window.act_export) == {"Ctrl+E"}
    assert keys(window.act_quit) == {"Ctrl+Q"}


def test_status_bar_shows_device_and_memory(window):
    assert window.device_label.text().startswith(("cpu", "cuda", "mps"))
    assert "RAM" in window.memory_label.text()


def test_logging_without_stdio(tmp_path, monkeypatch):
    """A windowed frozen build has no stdout/stderr: logging must still work (file only)."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(logging_setup, "_state", {})
    monkeypatch.setattr(logging_setup, "log_dir", lambda: tmp_path / "logs")
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)
    path = logging_setup.setup_logging()
    logging.getLogger("dgkip.test").warning("written without a console")
    for handler in root.handlers:
        handler.flush()
        handler.close()
    assert path == tmp_path / "logs" / logging_setup.LOG_NAME
    assert "written without a console" in path.read_text()


def test_log_lines_escape_control_characters(tmp_path, monkeypatch):
    """Folder and class names reach the log: their escape sequences and newlines must not."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(logging_setup, "_state", {})
    monkeypatch.setattr(logging_setup, "log_dir", lambda: tmp_path / "logs")
    monkeypatch.setattr(sys, "stderr", None)
    path = logging_setup.setup_logging()
    logging.getLogger("dgkip.test").warning("loaded %s", "\x1b[2Jevil\nFAKE ERROR line")
    for handler in root.handlers:
        handler.flush()
        handler.close()
    text = path.read_text()
    assert "\x1b" not in text and "\\x1b[2Jevil\n    FAKE ERROR line" in text
    assert not any(line.startswith("FAKE") for line in text.splitlines())
