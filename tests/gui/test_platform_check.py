"""Startup names the missing system libraries of Qt's xcb plugin and the packages to install."""
from __future__ import annotations

import pytest

from dgkip_gui import app
from dgkip_gui.platform_check import XCB_LIBRARIES, missing_libraries, missing_message, uses_xcb

pytestmark = pytest.mark.gui


def test_missing_libraries_are_named_with_their_packages():
    absent = {"libxcb-icccm.so.4", "libxcb-keysyms.so.1"}       # a fresh Debian 12 desktop (issue 16)
    missing = missing_libraries(lambda name: name not in absent)
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    text = missing_message(missing)
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1\n" in text
    assert "sudo dnf install xcb-util-wm xcb-util-keysyms\n" in text
    assert "libxcb-cursor0" not in text                          # not the library Qt's own message blames
    assert missing_libraries(lambda name: True) == []


def test_every_library_has_both_packages():
    for name, (debian, fedora) in XCB_LIBRARIES.items():
        assert name.startswith("lib") and ".so." in name and debian and fedora


def test_only_an_xcb_session_is_checked():
    assert uses_xcb({"DISPLAY": ":0"}, "linux")
    assert not uses_xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert not uses_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert uses_xcb({"QT_QPA_PLATFORM": "xcb"}, "linux")
    assert not uses_xcb({"DISPLAY": ":0"}, "darwin")


def test_app_refuses_to_start_with_the_packages_on_stderr(monkeypatch, capsys):
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(app, "missing_libraries", lambda: ["libxcb-icccm.so.4"])
    assert app.main([]) == 2
    err = capsys.readouterr().err
    assert "libxcb-icccm.so.4" in err and "apt-get install libxcb-icccm4" in err and "xcb-util-wm" in err


def test_readme_and_make_run_list_every_package():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    readme, makefile = ((repo / name).read_text(encoding="utf-8") for name in ("README.md", "Makefile"))
    for debian, fedora in XCB_LIBRARIES.values():
        assert debian in readme and debian in makefile, debian
        if fedora != "libxcb":          # Fedora's base libxcb is always there (the X11 client needs it)
            assert fedora in readme and fedora in makefile, fedora
