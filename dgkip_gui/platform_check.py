"""Startup check of the system libraries Qt's X11 (xcb) platform plugin needs.

Without them Qt aborts with "Could not load the Qt platform plugin xcb" and often names the wrong
library (``libxcb-cursor0`` while ``libxcb-icccm4`` is missing). Before the QApplication exists no
dialog can open, so :func:`missing_message` says on stderr which libraries are missing and which
Debian/Ubuntu and Fedora packages provide them.
"""
from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable

# shared library → (Debian/Ubuntu package, Fedora package), as Qt 6's xcb plugin links them
XCB_LIBRARIES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
}


def uses_xcb(environ: dict[str, str] | None = None, platform: str = sys.platform) -> bool:
    """True when Qt will pick the xcb plugin: Linux/BSD with an X display, and neither an explicit
    other platform (``QT_QPA_PLATFORM``) nor a Wayland session."""
    env = os.environ if environ is None else environ
    if platform in ("win32", "darwin"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(":")[0] == "xcb"
    return bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY")


def _loads(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def missing_libraries(loads: Callable[[str], bool] = _loads) -> list[str]:
    """The xcb plugin's libraries the dynamic loader cannot find, in :data:`XCB_LIBRARIES` order."""
    return [name for name in XCB_LIBRARIES if not loads(name)]


def missing_message(missing: list[str]) -> str:
    """What to tell the user about ``missing`` libraries: which, and the install commands."""
    debian = " ".join(dict.fromkeys(XCB_LIBRARIES[name][0] for name in missing))
    fedora = " ".join(dict.fromkeys(XCB_LIBRARIES[name][1] for name in missing))
    return (f"the Qt X11 (xcb) platform plugin needs system libraries that are missing: {', '.join(missing)}.\n"
            f"  Debian/Ubuntu: sudo apt-get install {debian}\n"
            f"  Fedora:        sudo dnf install {fedora}\n"
            "  (or run headless with QT_QPA_PLATFORM=offscreen, e.g. --self-test)")
