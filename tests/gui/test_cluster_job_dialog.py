"""Run › Export a cluster job… (issue 13 item 4): the dialog's choices and the current settings become a
job folder; its run.sh, run under torchrun with 2 gloo processes, leaves an export that the app opens like
any other; settings that torchrun would refuse are refused before anything is written."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialog, QMessageBox

from dgkip_gui.cluster_job_dialog import ClusterJobDialog
from engine.config import DistillConfig

from gui_helpers import load, quick

pytestmark = pytest.mark.gui
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def informed(monkeypatch) -> list[tuple[str, str]]:
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "information", lambda parent, title, text, *a, **k: shown.append((title, text)))
    return shown


def _choose(monkeypatch, folder: Path, nproc: int, seen: dict) -> None:
    """The dialog 'shown': its defaults recorded, the user's choices typed into its own widgets, OK pressed."""
    def exec_(dialog: ClusterJobDialog) -> QDialog.DialogCode:
        seen.update(title=dialog.windowTitle(), default_folder=dialog.folder.text(), nproc=dialog.nproc.value())
        dialog.nproc.setValue(nproc)
        dialog.folder.setText(str(folder))
        return QDialog.DialogCode.Accepted
    monkeypatch.setattr(ClusterJobDialog, "exec", exec_)


def test_menu_action_writes_the_job_and_its_export_opens_in_the_app(qtbot, window, tmp_path, monkeypatch, informed):
    load(qtbot, window)
    quick(window, teacher="nystrom", centres=60, steps=3, eval_every=0)
    run_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Run")
    assert window.act_cluster_job in run_menu.actions() and window.act_cluster_job.isEnabled()
    seen: dict = {}
    _choose(monkeypatch, tmp_path / "job", 2, seen)
    window.act_cluster_job.trigger()
    assert seen["title"] == "Export a cluster job" and seen["nproc"] == 2 and seen["default_folder"]
    job = tmp_path / "job"
    assert sorted(p.name for p in job.iterdir()) == ["README.txt", "config.json", "job.slurm", "run.sh"]
    written = DistillConfig.load(job / "config.json")
    assert written == window.settings.config().replace(data="sample", test_data=None)
    assert (written.teacher, written.centres, written.steps) == ("nystrom", 60, 3)
    assert informed and informed[-1][0] == "Cluster job written" and str(job) in informed[-1][1]

    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    r = subprocess.run([str(job / "run.sh")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["metrics"]["processes"] == 2
    assert window.open_export(job / "export")                  # opens like any other export
    assert window.export_info.path == job / "export"
    assert window.act_transfer.isEnabled()


def test_what_torchrun_refuses_gets_the_error_dialog_and_nothing_is_written(qtbot, window, tmp_path, monkeypatch,
                                                                             informed):
    load(qtbot, window)
    quick(window, teacher="exact")
    seen: dict = {}
    _choose(monkeypatch, tmp_path / "job", 2, seen)
    with qtbot.waitSignal(window.error_shown, timeout=5000) as blocker:
        window.act_cluster_job.trigger()
    report = blocker.args[0]
    assert report.title == "Cluster job refused" and "exact teacher is not sharded" in report.message
    assert not (tmp_path / "job").exists() and not informed
    # one process in all is allowed (nothing to share); a second job into the filled folder is refused
    assert window.files.cluster_job(tmp_path / "job", _one()) == tmp_path / "job"
    with qtbot.waitSignal(window.error_shown, timeout=5000) as blocker:
        assert window.files.cluster_job(tmp_path / "job", _one()) is None
    assert "already exists" in blocker.args[0].message


def _one():
    from engine.cluster_job import JobOptions
    return JobOptions(nproc_per_node=1)


def test_dialog_shows_every_control_unclipped_and_needs_a_folder(qtbot, window, tmp_path):
    from clipping import clipped_widgets
    dialog = ClusterJobDialog(str(tmp_path / "cluster-job"), parent=window)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert clipped_widgets(dialog) == []
    ok = dialog.buttons.button(dialog.buttons.StandardButton.Ok)
    assert ok.isEnabled() and dialog.nproc.value() == 2 and dialog.nodes.value() == 1
    dialog.folder.setText("  ")
    assert not ok.isEnabled()
    dialog.folder.setText(str(tmp_path / "j"))
    dialog.nodes.setValue(3)
    folder, options = dialog.choice()
    assert folder == tmp_path / "j" and (options.nodes, options.nproc_per_node, options.world) == (3, 2, 6)
