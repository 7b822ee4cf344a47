"""Bundled assets from the top-level ``resources/`` folder, found both from a source checkout and
inside a PyInstaller build (which bundles it as ``sys._MEIPASS/resources``)."""
from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtGui import QIcon

ICON = "icons/dgkip-studio.png"


def resource_path(name: str) -> Path:
    """Path of ``resources/<name>`` (the file may be missing, e.g. in a plain wheel install)."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    root = Path(frozen_root) if frozen_root is not None else Path(__file__).resolve().parents[1]
    return root / "resources" / name


def app_icon() -> QIcon:
    """The application icon (an empty icon when the asset is missing, never an error)."""
    path = resource_path(ICON)
    return QIcon(str(path)) if path.exists() else QIcon()
