"""Datasets and exports have their own remembered folders (QSettings ``paths/datasets`` and
``paths/exports``): opening a dataset does not move the export dialog, and the other way round."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from dgkip_gui import open_dialog
from dgkip_gui.export_target import free_subfolder
from dgkip_gui.settings_store import DATASETS, EXPORTS, SettingsStore

from gui_helpers import image_folder, load, quick, run_to_end

pytestmark = pytest.mark.gui


def test_store_keeps_one_folder_per_kind(tmp_path):
    ini = str(tmp_path / "settings.ini")
    store = SettingsStore(QSettings(ini, QSettings.Format.IniFormat))
    assert store.folder(DATASETS) == store.folder(EXPORTS) == str(Path.home())
    (tmp_path / "old").mkdir()
    store._s.setValue("paths/last_dir", str(tmp_path / "old"))            # an earlier version's shared key
    assert store.folder(DATASETS) == store.folder(EXPORTS) == str(tmp_path / "old")

    (tmp_path / "data").mkdir()
    (tmp_path / "out").mkdir()
    store.set_folder(DATASETS, tmp_path / "data")
    store.set_folder(EXPORTS, tmp_path / "out")
    store.sync()
    again = QSettings(ini, QSettings.Format.IniFormat)
    assert again.value("paths/datasets") == str(tmp_path / "data")
    assert again.value("paths/exports") == str(tmp_path / "out")
    store = SettingsStore(again)
    assert store.folder(DATASETS) == str(tmp_path / "data") and store.folder(EXPORTS) == str(tmp_path / "out")

    (tmp_path / "out").rmdir()                                             # a folder that is gone is skipped
    assert store.folder(EXPORTS) == str(tmp_path / "old")
    with pytest.raises(ValueError):
        store.folder("downloads")


def test_open_and_export_dialogs_start_in_their_own_folders(qtbot, window, tmp_path, monkeypatch):
    data_root = tmp_path / "datasets"
    folder = image_folder(data_root / "shapes", {"circle": 6, "square": 6})
    exports = tmp_path / "exports"
    exports.mkdir()
    starts: dict[str, list[str]] = {"open": [], "export": []}

    def choose(parent, caption, directory):
        starts["open"].append(directory)
        return str(folder)

    def save(parent, caption, proposal):
        starts["export"].append(str(proposal))
        return str(exports)

    monkeypatch.setattr(open_dialog, "choose_dataset", choose)
    monkeypatch.setattr(open_dialog, "choose_export_folder", save)
    with qtbot.waitSignal(window.dataset_loaded, timeout=120_000):
        window.act_open.trigger()
    quick(window, steps=2, max_per_class=6)
    assert run_to_end(qtbot, window) == "finished"
    proposed = free_subfolder(Path.home(), window.run_session.suggested_export_name())
    assert window.export_result() == exports                              # empty folder: written into
    with qtbot.waitSignal(window.dataset_loaded, timeout=120_000):
        window.act_open.trigger()
    load(qtbot, window)                                                   # the sample moves no folder

    assert starts["open"][1] == str(data_root)                           # not the exports folder
    # the export dialog proposes a new folder named after the run, in the home folder the first time
    assert starts["export"] == [str(proposed)] and not proposed.exists()
    assert window.store.folder(DATASETS) == str(data_root)
    assert window.store.folder(EXPORTS) == str(exports.parent)           # beside the last export
