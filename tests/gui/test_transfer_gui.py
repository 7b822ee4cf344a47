"""Transfer: finite networks trained on an exported distilled set and tested on real data, from the real window."""
from __future__ import annotations

import csv
import json
import re
import shutil

import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDialog, QFileDialog

from engine.config import DistillConfig
from engine.distill import run
from engine.events import Done
from engine.export import export_distilled, update_manifest
from engine.transfer import QUICK_EPOCHS
from dgkip_gui.transfer_dialog import TransferDialog, TransferOptions
from dgkip_gui.worker import running_threads

from gui_helpers import RUN_TIMEOUT_MS, image_folder, load, quick, run_to_end, save_screenshot

pytestmark = pytest.mark.gui

TINY = dict(networks=("mlp",), seeds=2, epochs=3)


@pytest.fixture(scope="module")
def sample_export(tmp_path_factory):
    """A short DGKIP run on the sample digits, exported once (tests train on copies of it)."""
    config = DistillConfig(ipc=1, steps=2, eval_every=0, max_per_class=40, device="cpu", kernel="ntk-fc",
                           loss="cross-entropy", mode="dgkip")
    result = next(e.result for e in run(config) if isinstance(e, Done))
    return export_distilled(result, tmp_path_factory.mktemp("exports") / "sample-set")


@pytest.fixture
def export_copy(sample_export, tmp_path):
    return shutil.copytree(sample_export, tmp_path / "set")


def accuracy_cell(window, row: int = 0) -> float:
    text = window.transfer_panel.table.item(row, 1).text()
    match = re.fullmatch(r"(\d+\.\d+) ± (\d+\.\d+) %", text)
    assert match, text
    return float(match.group(1))


def transfer(qtbot, window, **options) -> str:
    with qtbot.waitSignal(window.transfer_finished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.start_transfer(TransferOptions(**{**TINY, **options}))
    return finished.args[0]


def test_export_then_transfer_fills_table_and_manifest(qtbot, window, tmp_path):
    assert not window.act_transfer.isEnabled()                       # nothing exported yet
    load(qtbot, window)
    quick(window, steps=3)
    assert run_to_end(qtbot, window) == "finished"
    target = window.export_result(tmp_path / "distilled")
    assert window.act_transfer.isEnabled() and window.export_info.path == target
    assert window.transfer_session.defaults().data == "sample"              # the run's own dataset
    # its tool tip names the export it trains on (Transfer stays on after another dataset is loaded)
    assert "the export distilled (10 images of Sample: handwritten digits)" in window.act_transfer.toolTip()

    with qtbot.waitSignal(window.transfer_finished, timeout=RUN_TIMEOUT_MS) as finished:
        window.start_transfer(TransferOptions(**TINY))
        assert window.running and not window.act_transfer.isEnabled() and not window.act_run.isEnabled()
    assert finished.args == ["finished"]
    table = window.transfer_panel.table
    assert table.rowCount() == 1 and table.item(0, 0).text() == "MLP"
    assert 0.0 <= accuracy_cell(window) <= 100.0
    assert table.item(0, 2).text() == "2" and table.item(0, 3).text() == "3"
    assert window.results_tabs.currentWidget() is window.transfer_panel
    assert window.run_panel.info.text().startswith("Transfer: MLP ")

    transfer = json.loads((target / "manifest.json").read_text())["transfer"]
    assert list(transfer) == ["mlp"] and len(transfer["mlp"]["accuracies"]) == 2
    assert transfer["mlp"]["recipe"]["epochs"] == 3
    assert accuracy_cell(window) == pytest.approx(100 * transfer["mlp"]["mean"], abs=0.005)

    table.copy()
    assert QGuiApplication.clipboard().text().startswith("Network\tTest accuracy")
    rows = list(csv.DictReader(window.export_transfer_csv(tmp_path / "transfer.csv").open()))
    assert rows[0]["network"] == "mlp" and float(rows[0]["mean_accuracy"]) == pytest.approx(transfer["mlp"]["mean"])
    path = save_screenshot(window, "transferred")
    assert path.stat().st_size > 10_000


def test_opening_an_export_shows_saved_results(qtbot, window, export_copy):
    summary = {"network": "convnet", "accuracies": [0.5, 0.7], "mean": 0.6, "std": 0.1,
               "recipe": {"epochs": 100}, "seconds": 12.5}
    update_manifest(export_copy, "transfer", {"convnet": summary})
    assert window.open_export(export_copy)
    table = window.transfer_panel.table
    assert table.rowCount() == 1 and table.item(0, 0).text() == "ConvNet-3"
    assert table.item(0, 1).text() == "60.00 ± 10.00 %" and table.item(0, 2).text() == "2"
    assert window.act_transfer.isEnabled() and window.act_export_transfer.isEnabled()


def test_cancel_mid_transfer_leaves_no_thread_and_app_usable(qtbot, window, export_copy):
    assert window.open_export(export_copy)
    with qtbot.waitSignal(window.transfer_finished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.start_transfer(TransferOptions(networks=("mlp",), seeds=3, epochs=1_000_000))
        qtbot.waitUntil(lambda: window.run_panel.bar.maximum() == 3_000_000 and "epoch" in window.run_panel.info.text(),
                        timeout=RUN_TIMEOUT_MS)
        assert window.act_cancel.isEnabled()
        save_screenshot(window, "transferring")
        window.act_cancel.trigger()
    assert finished.args == ["cancelled"]
    qtbot.waitUntil(lambda: running_threads() == 0, timeout=10_000)
    assert not window.busy and window.error_dialog is None
    assert "transfer" not in json.loads((export_copy / "manifest.json").read_text())
    assert window.transfer_panel.table.rowCount() == 0
    assert window.act_transfer.isEnabled() and window.act_open_export.isEnabled()
    assert transfer(qtbot, window) == "finished"                      # usable again
    assert window.transfer_panel.table.rowCount() == 1


def test_transfer_an_exported_set_from_the_menu(qtbot, window, export_copy, monkeypatch):
    """File chooser → saved results shown → options dialog (defaults: the run's dataset) → transfer."""
    seen = {}

    def choose(dialog) -> QDialog.DialogCode:
        seen["defaults"] = dialog.options()
        dialog.networks["convnet"].setChecked(False)
        dialog.networks["resnet18"].setChecked(False)
        dialog.seeds.setValue(1)
        dialog.length.setCurrentIndex(2)
        dialog.epochs.setValue(2)
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(export_copy))
    monkeypatch.setattr(TransferDialog, "exec", choose)
    with qtbot.waitSignal(window.transfer_finished, timeout=RUN_TIMEOUT_MS) as finished:
        window.act_open_export.trigger()
    assert finished.args == ["finished"]
    assert seen["defaults"].data == "sample" and seen["defaults"].seeds == 3
    assert window.export_info.path == export_copy
    assert window.transfer_panel.table.item(0, 2).text() == "1"
    assert window.run_panel.info.text().startswith("Transfer: MLP")


def test_closing_mid_transfer_asks_and_stops_it(qtbot, window, export_copy, answer):
    assert window.open_export(export_copy)
    assert window.start_transfer(TransferOptions(networks=("mlp",), seeds=1, epochs=1_000_000))
    qtbot.waitUntil(lambda: "epoch" in window.run_panel.info.text(), timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(window.transfer_finished, timeout=RUN_TIMEOUT_MS) as finished:
        window.close()
    assert finished.args == ["cancelled"] and answer["asked"] == ["Quit during a run?"]
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10_000)
    assert not window.busy


def test_classes_missing_from_the_dataset_show_the_error(qtbot, window, export_copy, tmp_path):
    pets = image_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    assert window.open_export(export_copy)
    with qtbot.waitSignal(window.error_shown, timeout=RUN_TIMEOUT_MS) as shown:
        assert transfer(qtbot, window, data=str(pets)) == "failed"
    assert "not in this dataset" in shown.args[0].message
    assert window.error_dialog is not None and window.error_dialog.isVisible()
    assert "failed" in window.transfer_panel.note.text()
    assert window.act_transfer.isEnabled() and not window.busy


def test_a_folder_that_is_not_an_export_is_refused(qtbot, window, tmp_path):
    with qtbot.waitSignal(window.error_shown, timeout=5000) as shown:
        assert not window.open_export(tmp_path)
    assert "manifest.json" in shown.args[0].message
    assert window.export_info is None and not window.act_transfer.isEnabled()


def test_dialog_defaults_and_choices(qtbot, export_copy):
    defaults = TransferOptions(data="sample", epochs=QUICK_EPOCHS)
    dialog = TransferDialog(export_copy, defaults)
    qtbot.addWidget(dialog)
    assert dialog.options() == defaults                               # all networks, 3 seeds, quick
    for name in ("convnet", "resnet18"):
        dialog.networks[name].setChecked(False)
    dialog.seeds.setValue(2)
    dialog.length.setCurrentIndex(2)
    assert dialog.epochs.isEnabled()
    dialog.epochs.setValue(7)
    dialog.test_data.setText("/data/test")
    assert dialog.options() == TransferOptions(("mlp",), 2, 7, "sample", "/data/test")
    dialog.length.setCurrentIndex(1)
    assert dialog.options().epochs is None and not dialog.epochs.isEnabled()   # each network's recipe
    dialog.networks["mlp"].setChecked(False)
    assert not dialog.ok.isEnabled()


def test_progress_counts_epochs_over_networks_and_seeds():
    options = TransferOptions(networks=("mlp", "convnet"), seeds=2, epochs=5)
    assert options.total_epochs() == 20
    assert options.epochs_done("mlp", 0, 1) == 1
    assert options.epochs_done("mlp", 1, 5) == 10
    assert options.epochs_done("convnet", 1, 5) == 20
    assert TransferOptions(networks=("mlp",), seeds=1, epochs=None).total_epochs() == 300


def test_transfer_with_a_missing_gpu_says_it_uses_the_cpu(qtbot, window, export_copy):
    """The settings name CUDA on a machine without it: the transfer runs on the CPU and says why
    (a distillation run would refuse; a transfer on an existing set should still work)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert window.open_export(export_copy)
    window.settings.set_config(window.settings.config().replace(device="cuda"))
    with qtbot.waitSignal(window.transfer_finished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.start_transfer(TransferOptions(**TINY))
        note = window.transfer_panel.note.text()
    assert "(cpu: the settings ask for cuda, which this machine does not have)" in note
    assert finished.args == ["finished"]
    assert json.loads((export_copy / "manifest.json").read_text())["transfer"]["mlp"]["device"] == "cpu"
