"""Issue 14: an export that fails at the last moment (full disk, a folder turned read-only) keeps the
finished result in the window and offers to save it elsewhere."""
from __future__ import annotations

import errno

from dgkip_gui import open_dialog

import engine.export
from engine.export import load_distilled
from gui_helpers import load, quick, run_to_end


def test_failed_export_keeps_the_result_and_offers_another_folder(qtbot, window, tmp_path, answer, monkeypatch):
    load(qtbot, window)
    quick(window, steps=2, eval_every=0)
    assert run_to_end(qtbot, window) == "finished"
    real = engine.export._write_export

    def disk_full(result, folder):
        if folder.parent == tmp_path / "full":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(result, folder)
    monkeypatch.setattr(engine.export, "_write_export", disk_full)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setattr(open_dialog, "choose_export_folder", lambda *a, **k: str(tmp_path / "elsewhere"))

    answer["reply"] = answer["reply"].No                 # declined: no second dialog, the result stays
    assert window.export_result(tmp_path / "full" / "out") is None
    assert answer["asked"] == ["Save the distilled set elsewhere?"]
    assert window.error_dialog is None
    status = window.statusBar().currentMessage()
    assert status.startswith("Not exported: ") and "is full" in status and "is kept" in status    # in words (issue 16)
    assert window.result is not None and window.act_export.isEnabled()

    answer["reply"] = answer["reply"].Yes                # accepted: the folder chooser, then a real export
    assert window.export_result(tmp_path / "full" / "out") == tmp_path / "elsewhere"
    assert load_distilled(tmp_path / "elsewhere").images.shape[0] == 10
    assert not (tmp_path / "full" / "out").exists()
