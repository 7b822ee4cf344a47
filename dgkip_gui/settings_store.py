"""Persistent app state in QSettings: window geometry, the last run configuration, recent datasets and
the folders the file dialogs start in (one for datasets, one for exports)."""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from engine.config import ConfigError, DistillConfig

log = logging.getLogger(__name__)

MAX_RECENT = 8
SAMPLE = "sample"
DATASETS = "datasets"                   # folder kinds, remembered separately
EXPORTS = "exports"
LEGACY_FOLDER_KEY = "paths/last_dir"    # the one shared folder of earlier versions: read as a fallback


def _check_kind(kind: str) -> str:
    if kind not in (DATASETS, EXPORTS):
        raise ValueError(f"unknown folder kind {kind!r}")
    return kind


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
    def folder(self, kind: str) -> str:
        """Where the file dialogs of ``kind`` start: :data:`DATASETS` (datasets and test data) or
        :data:`EXPORTS` (exported sets, plots, tables and settings files). The remembered folder if it
        still exists, else that of an older version (one shared key), else the home folder."""
        for key in (f"paths/{_check_kind(kind)}", LEGACY_FOLDER_KEY):
            value = self._s.value(key)
            if value and Path(str(value)).is_dir():
                return str(value)
        return str(Path.home())

    def set_folder(self, kind: str, path: str | Path) -> None:
        """Remember ``path`` as the folder of ``kind`` (the other kind keeps its own)."""
        self._s.setValue(f"paths/{_check_kind(kind)}", str(path))

    def sync(self) -> None:
        self._s.sync()
