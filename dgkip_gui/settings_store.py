"""Persistent app state in QSettings: window geometry, the last run configuration, recent datasets."""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from engine.config import ConfigError, DistillConfig

log = logging.getLogger(__name__)

MAX_RECENT = 8
SAMPLE = "sample"


class SettingsStore:
    """Typed access to the app's QSettings (pass an INI-backed QSettings in tests)."""

    def __init__(self, settings: QSettings | None = None) -> None:
        self._s = settings if settings is not None else QSettings()

    # -- window ----------------------------------------------------------------
    def layout(self, name: str) -> QByteArray | None:
        """A saved ``QWidget.saveGeometry()`` / ``QSplitter.saveState()`` blob, by name."""
        value = self._s.value(f"window/{name}")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_layout(self, name: str, state: QByteArray) -> None:
        self._s.setValue(f"window/{name}", state)

    # -- run configuration -------------------------------------------------------
    def config(self) -> DistillConfig | None:
        """The last configuration, or ``None`` when none was saved or it no longer parses."""
        text = self._s.value("run/config")
        if not text:
            return None
        try:
            return DistillConfig.from_json(str(text))
        except (ConfigError, ValueError, TypeError) as exc:
            log.warning("ignoring the saved configuration: %s", exc)
            return None

    def set_config(self, config: DistillConfig) -> None:
        self._s.setValue("run/config", config.to_json())

    # -- recent datasets ---------------------------------------------------------
    def recent(self) -> list[str]:
        """Recent dataset paths, newest first; paths that no longer exist are dropped."""
        paths = []
        for i in range(self._s.beginReadArray("recent")):
            self._s.setArrayIndex(i)
            paths.append(str(self._s.value("path", "")))
        self._s.endArray()
        kept = [p for p in paths if p == SAMPLE or (p and Path(p).exists())]
        if kept != paths:
            self._write_recent(kept)
        return kept

    def add_recent(self, path: str) -> list[str]:
        """Put ``path`` first in the recent list and return the new list."""
        paths = [path] + [p for p in self.recent() if p != path]
        self._write_recent(paths[:MAX_RECENT])
        return paths[:MAX_RECENT]

    def _write_recent(self, paths: list[str]) -> None:
        self._s.remove("recent")
        self._s.beginWriteArray("recent", len(paths))
        for i, path in enumerate(paths):
            self._s.setArrayIndex(i)
            self._s.setValue("path", path)
        self._s.endArray()

    # -- folders -----------------------------------------------------------------
    def last_dir(self) -> str:
        return str(self._s.value("paths/last_dir", str(Path.home())))

    def set_last_dir(self, path: str | Path) -> None:
        self._s.setValue("paths/last_dir", str(path))

    def sync(self) -> None:
        self._s.sync()
