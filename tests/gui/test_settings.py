"""The settings form bound to DistillConfig: round trip, inline validation, presets, kernel parameters,
and persistence of settings, geometry and recent datasets."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import QFileDialog

from engine.config import DistillConfig, KERNELS
from dgkip_gui.widgets.settings_panel import HELP, PRESETS, SettingsPanel

from gui_helpers import load, quick, run_to_end

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(qtbot) -> SettingsPanel:
    panel = SettingsPanel()
    qtbot.addWidget(panel)
    panel.show()
    return panel


def test_form_round_trips_the_config(panel):
    config = DistillConfig(mode="dgkip", loss="hinge", kernel="rbf", kernel_params={"bandwidth": 2.5}, lam=0.02,
                           ipc=7, steps=123, lr=0.05, learn_labels=False, preprocess="zca", device="cpu",
                           lr_schedule="cosine", warmup_steps=10,
                           dtype="float64", seed=11, optimizer="sgd", max_per_class=50, eval_every=9)
    panel.set_config(config)
    assert panel.config() == config
    assert panel.error is None


def test_every_widget_explains_itself(panel):
    for name, binding in panel._fields.items():
        assert binding.widget.toolTip() == HELP[name], name


def test_invalid_values_are_marked_inline_and_never_crash(qtbot, panel):
    lam = panel._fields["lam"].widget
    lam.clear()
    qtbot.keyClicks(lam, "abc")
    assert panel.error is not None and panel.error.field == "lam"
    assert panel.message.isVisible() and panel.message.text().startswith("⚠ λ (ridge): ")   # the form's label
    assert "border" in lam.styleSheet()
    assert panel.valid_config() is None

    lam.clear()
    qtbot.keyClicks(lam, "-1")
    assert panel.error.field == "lam" and "positive" in str(panel.error)
    lam.clear()
    qtbot.keyClicks(lam, "1e-3")
    assert panel.error is None and lam.styleSheet() == "" and not panel.message.isVisible()

    panel._fields["mode"].set("kip")          # KIP needs the squared loss: the engine's rule, shown inline
    assert panel.error.field == "loss" and "border" in panel._fields["loss"].widget.styleSheet()


def test_kernel_parameters_form_follows_the_kernel(qtbot, panel):
    kernel = panel._fields["kernel"].widget
    kernel.setCurrentIndex(kernel.findData("nngp-fc"))
    assert sorted(panel._kernel_edits) == ["b_std", "depth", "w_std"]
    qtbot.keyClicks(panel._kernel_edits["depth"], "3")
    assert panel.config().kernel_params == {"depth": 3}
    panel._kernel_edits["depth"].setText("")
    qtbot.keyClicks(panel._kernel_edits["depth"], "two")
    assert panel.error.field == "kernel_params.depth"
    assert "border" in panel._kernel_edits["depth"].styleSheet()
    panel._kernel_edits["depth"].setText("")
    qtbot.keyClicks(panel._kernel_edits["depth"], "0")
    assert panel.error.field == "kernel_params"          # rejected by the engine's kernel factory

    kernel.setCurrentIndex(kernel.findData("linear"))
    assert list(panel._kernel_edits) == ["bias"] and panel.error is None
    assert kernel.count() == len(KERNELS)


def test_presets_fill_the_form(panel):
    panel.set_dataset([str(d) for d in range(10)])
    for index, name in enumerate(PRESETS, start=1):
        panel.preset.activated.emit(index)
        assert panel.error is None, name
        assert panel.preset.currentIndex() == 0
    pair = list(PRESETS).index("MNIST pair, hinge") + 1
    panel.preset.activated.emit(pair)
    config = panel.config()
    assert config.loss == "hinge" and config.classes == ["0", "1"]
    panel.preset.activated.emit(list(PRESETS).index("Natural images (ConvNet features)") + 1)
    config = panel.config()
    assert config.kernel == "rf-conv" and config.lam == 1e-4 and config.max_per_class == 1000
    assert config.kernel_params == {"width": 128, "n_models": 2, "redraw_every": 0}


def test_class_checklist(qtbot, window):
    load(qtbot, window)
    classes = window.settings.class_list
    assert classes.count() == 10 and window.settings.config().classes is None
    for row in range(2, 10):
        classes.item(row).setCheckState(Qt.CheckState.Unchecked)
    assert window.settings.config().classes == ["0", "1"]
    classes.item(1).setCheckState(Qt.CheckState.Unchecked)
    assert window.settings.error.field == "classes" and not window.act_run.isEnabled()


def test_settings_geometry_and_recent_persist(qtbot, make_window, store, tmp_path):
    first = make_window()
    load(qtbot, first)
    first.settings.set_config(first.settings.config().replace(ipc=3, loss="hinge"))
    # offscreen's screen is 800 px wide, less than the panels' minimum width (they scroll sideways),
    # so the main splitter has no room; a tall window gives the plots-results splitter some
    first.setGeometry(QRect(40, 50, 760, 700))
    qtbot.waitUntil(lambda: first.panels.horizontalScrollBar().isVisible())   # laid out at that size
    splitters = ("right_splitter", "bottom_splitter")
    first._splitters["right_splitter"].setSizes([400, 210])
    first._splitters["bottom_splitter"].setSizes([260, 385])
    qtbot.wait(20)
    wanted = {name: first._splitters[name].sizes() for name in splitters}
    assert wanted["right_splitter"][0] >= 380 and wanted["bottom_splitter"][0] < 300
    gone = tmp_path / "gone"
    gone.mkdir()
    store.add_recent(str(gone))
    first.close()
    gone.rmdir()

    second = make_window(resize=False)
    assert second.settings.config().ipc == 3 and second.settings.config().loss == "hinge"
    assert second.geometry() == QRect(40, 50, 760, 700)
    qtbot.waitUntil(lambda: {name: second._splitters[name].sizes() for name in splitters} == wanted)
    assert store.recent() == ["sample"]                    # the missing folder was dropped
    assert [a.text() for a in second.recent_menu.actions()] == ["Sample: handwritten digits"]
    assert second.dataset_panel.recent_list.count() == 1


def test_estimate_shows_memory_and_refusal(qtbot, window):
    """After the sample loads the settings tab shows the run estimate on one line (memory figure, green,
    the breakdown on demand); a tiny memory budget turns it into the refusal (red) whose details name
    what to change."""
    load(qtbot, window)
    window.left_tabs.setCurrentIndex(1)                         # the Settings tab
    view = window.settings.estimate
    qtbot.waitUntil(view.isVisible, timeout=5_000)
    assert re.search(r"Estimated memory \d[\d,.]* (bytes|KiB|MiB|GiB)", view.line.text()), view.line.text()
    assert "fits the memory budget" in view.line.text() and "#1e6b2e" in view.line.styleSheet()
    assert not view.details.isVisible()
    view.details_button.click()
    assert view.details.isVisible() and "Peak at the" in view.details.text()

    window.settings.advanced_toggle.setChecked(True)
    budget = window.settings._fields["memory_budget_gb"].widget
    budget.clear()
    qtbot.keyClicks(budget, "0.001")
    qtbot.waitUntil(lambda: "Will not fit" in view.line.text(), timeout=5_000)
    assert view.isVisible() and "#b3261e" in view.line.styleSheet()
    assert "max_per_class to" in view.details.text() and "memory_budget_gb to at least" in view.details.text()


def test_word_valued_kernel_parameters_round_trip(qtbot, panel):
    """rf-conv's feature_dtype is a word: a run's resolved parameters (as saved with an export) load
    into the form and come back unchanged, a typed value is taken, and a bad one is the kernel's error."""
    from engine.kernels import make_kernel

    resolved = make_kernel("rf-conv", width=32).params()          # what a run records in its config
    panel.set_config(panel.config().replace(kernel="rf-conv", kernel_params=resolved))
    assert panel.error is None and panel.config().kernel_params == resolved
    resolved = make_kernel("rf-fc", width=32).params()            # feature_dtype None: left empty
    panel.set_config(panel.config().replace(kernel="rf-fc", kernel_params=resolved))
    assert panel.error is None and make_kernel("rf-fc", **panel.config().kernel_params).params() == resolved
    assert panel._kernel_edits["w_std"].placeholderText() == "default 1.41421"
    panel.set_config(panel.config().replace(kernel="rf-fc", kernel_params={}))
    qtbot.keyClicks(panel._kernel_edits["feature_dtype"], "float32")
    assert panel.config().kernel_params == {"feature_dtype": "float32"}
    panel._kernel_edits["feature_dtype"].setText("")
    qtbot.keyClicks(panel._kernel_edits["feature_dtype"], "half")
    assert panel.error.field == "kernel_params" and "feature_dtype" in str(panel.error)


def test_preset_and_reset_are_undoable_and_visible(qtbot, panel):
    from engine.config import DistillConfig

    mine = panel.config().replace(loss="hinge", ipc=7, lam=0.05)
    panel.set_config(mine)
    assert not panel.undo_button.isEnabled()
    panel.preset.activated.emit(list(PRESETS).index("Quick look") + 1)
    assert panel.config().loss == "cross-entropy" and panel.config().ipc == 1
    assert "#fff6d6" in panel._fields["loss"].widget.styleSheet()         # the changed fields are marked
    assert panel._fields["seed"].widget.styleSheet() == ""                # the unchanged ones are not
    assert panel.undo_button.isEnabled() and "Quick look" in panel.undo_button.toolTip()
    panel.undo_button.click()
    assert panel.config() == mine and not panel.undo_button.isEnabled()

    panel.reset_button.click()
    assert panel.config() == DistillConfig().replace(data=mine.data, test_data=mine.test_data)
    panel.undo_button.click()
    assert panel.config() == mine


def test_disabled_fields_look_disabled_also_when_they_show_a_placeholder(qtbot, panel):
    """During a run the form is disabled; an empty field's placeholder ("most that fit") was drawn darker
    than the disabled values, so those fields looked editable."""
    import numpy as np
    from PySide6.QtGui import QImage

    def darkest(widget) -> int:
        image = widget.grab().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
        pixels = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
        inner = pixels[4:image.height() - 4, 4:image.width() - 4]              # the text, not the frame
        return int(inner.min())

    panel.setEnabled(False)
    qtbot.wait(20)
    placeholder = panel._fields["centres"].widget
    value = panel._fields["lam"].widget
    assert not placeholder.text() and placeholder.placeholderText() and value.text()
    assert abs(darkest(placeholder) - darkest(value)) <= 24, (darkest(placeholder), darkest(value))


def test_kip_ridge_control_round_trips(panel):
    """Issue 17: the KIP ridge convention is a choice in the form, bound to DistillConfig.kip_ridge."""
    box = panel._fields["kip_ridge"].widget
    assert [box.itemData(i) for i in range(box.count())] == ["trace", "fixed"]
    for ridge in ("fixed", "trace"):
        config = DistillConfig(mode="kip", loss="squared", kip_ridge=ridge, kip_batch=500)
        panel.set_config(config)
        assert box.currentData() == ridge and panel.config() == config
    box.setCurrentIndex(box.findData("fixed"))
    assert panel.config().kip_ridge == "fixed" and panel.error is None


def test_kip_preset_uses_the_published_ridge(panel):
    panel.set_config(DistillConfig(kip_ridge="fixed"))
    config = PRESETS["KIP baseline (squared, NTK)"](panel.config(), [])
    assert config.mode == "kip" and config.kip_ridge == "trace"


def test_presets_after_the_combined_objective_stay_valid(panel):
    """A preset applied after one that mixes KIP's loss in returns to pure DGKIP (kip_weight needs the
    squared loss and DGKIP mode, which the other presets change)."""
    panel.set_dataset([str(d) for d in range(10)])
    mixed = list(PRESETS).index("Certified, near KIP's accuracy") + 1
    for index, name in enumerate(PRESETS, start=1):
        panel.preset.activated.emit(mixed)
        assert panel.config().kip_weight > 0 and panel.error is None
        panel.preset.activated.emit(index)
        assert panel.error is None, name
        if index != mixed:
            assert panel.config().kip_weight == 0 and panel.config().lr_schedule == "constant", name


def test_form_rows_come_from_the_declarations(panel):
    """Each setting declared for a form section has its row in that section, labelled and explained by
    its declaration (engine.config.SETTINGS); a choice box offers exactly the declared choices; a setting
    declared off the form has no widget."""
    from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox

    from engine.config import SETTINGS

    for name, setting in SETTINGS.items():
        if setting.group is None or setting.kind == "params":
            assert name not in panel._fields, name
            continue
        widget = panel._fields[name].widget
        assert widget.toolTip() == setting.help, name
        box = widget.parentWidget()
        while not isinstance(box, QGroupBox):
            box = box.parentWidget()
        assert box.title() == ("" if setting.group == "Advanced" else setting.group), name
        assert (box is panel.advanced) == (setting.group == "Advanced"), name
        if isinstance(widget, QCheckBox):
            assert widget.text() == setting.label, name
        elif setting.kind != "names":
            form = box.layout()
            assert isinstance(form, QFormLayout) and form.labelForField(widget).text() == setting.label, name
        if isinstance(widget, QComboBox):
            assert [widget.itemData(i) for i in range(widget.count())] == list(setting.spec.options()), name


def test_load_settings_takes_a_settings_file_or_an_exports_manifest(qtbot, window, tmp_path, monkeypatch):
    from engine.export import export_distilled
    load(qtbot, window)
    quick(window, steps=2, loss="hinge", ipc=2)
    assert run_to_end(qtbot, window) == "finished"
    out = Path(export_distilled(window.result, tmp_path / "export"))
    window.settings.set_config(window.settings.config().replace(loss="squared", ipc=5))
    chosen = {"path": str(out / "manifest.json")}
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (chosen["path"], ""))
    window.act_load_settings.trigger()
    config = window.settings.config()
    assert (config.loss, config.ipc, config.steps) == ("hinge", 2, 2) and window.error_dialog is None
    # shown as a preset is: the changed fields highlighted, and Undo back to the form before
    assert "#e3a008" in window.settings._fields["loss"].widget.styleSheet()     # the changed-field style
    assert window.settings.undo_button.isEnabled()
    window.settings.undo()
    assert (window.settings.config().loss, window.settings.config().ipc) == ("squared", 5)
    window.act_load_settings.trigger()

    chosen["path"] = str(out / "curves.csv")              # not settings: the message names the file
    window.act_load_settings.trigger()
    assert window.error_dialog is not None and str(out / "curves.csv") in window.error_dialog.report.message
    assert window.settings.config().loss == "hinge"


def test_the_settings_message_stays_in_view_where_the_form_is_scrolled(qtbot, panel):
    panel.resize(380, 420)
    panel.scroll.verticalScrollBar().setValue(panel.scroll.verticalScrollBar().maximum())   # at the foot
    panel._fields["kernel"].set("ntk-fc")
    depth = panel._kernel_edits["depth"]
    depth.clear()
    qtbot.keyClicks(depth, "0")
    assert panel.error is not None and panel.error.field == "kernel_params"
    assert panel.message.text() == "⚠ Kernel parameters: depth must be between 1 and 100"
    top_left = panel.message.mapTo(panel, panel.message.rect().topLeft())
    assert panel.message.isVisible() and 0 <= top_left.y() < panel.height()
    assert panel.message.geometry().top() >= panel.scroll.geometry().bottom()      # under the form, not in it


def test_save_settings_never_replaces_a_file_that_is_not_settings(qtbot, window, tmp_path, monkeypatch):
    chosen = {"path": str(tmp_path / "manifest.json")}
    (tmp_path / "manifest.json").write_text('{"config": {}, "class_folders": {}, "metrics": {}}')
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (chosen["path"], ""))
    window.act_save_settings.trigger()
    assert window.error_dialog is not None and "is not a settings file" in window.error_dialog.report.message
    assert "class_folders" in (tmp_path / "manifest.json").read_text()
    chosen["path"] = str(tmp_path / "run.json")                 # a new name, then an earlier settings file
    window.act_save_settings.trigger()
    window.act_save_settings.trigger()
    assert DistillConfig.load(tmp_path / "run.json") == window.settings.config().replace(
        data=DistillConfig.load(tmp_path / "run.json").data, test_data=None)


def test_recent_datasets_of_one_name_say_where_they_are(qtbot, make_window, store, tmp_path):
    """Two recent datasets named alike ("train" in two folders) read apart by the folder holding them,
    in the File menu and in the empty panel's list; the menu shows the full
    path as a tool tip."""
    for folder in ("mnist", "deep/er/cifar10"):
        (tmp_path / folder / "train").mkdir(parents=True)
        store.add_recent(str(tmp_path / folder / "train"))
    window = make_window()
    texts = [a.text() for a in window.recent_menu.actions()]
    assert texts[0] == "train — …/er/cifar10" and texts[1].startswith("train — ") and texts[1].endswith("/mnist")
    panel = window.dataset_panel.recent_list
    assert [panel.item(i).text() for i in range(panel.count())] == texts
    assert window.recent_menu.toolTipsVisible()
    assert window.recent_menu.actions()[0].toolTip() == str(tmp_path / "deep/er/cifar10/train")
