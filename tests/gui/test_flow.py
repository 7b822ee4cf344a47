"""The whole user journey on the real engine: load the sample, distil, watch, stop, export."""
from __future__ import annotations

import csv
import threading

import pytest
from PySide6.QtWidgets import QStyle
from engine.distill import run
from engine.events import Step
from engine.export import load_distilled

from gui_helpers import RUN_TIMEOUT_MS, load, quick, run_to_end, save_screenshot

pytestmark = pytest.mark.gui


def test_full_flow_on_sample(qtbot, make_window, tmp_path):
    hold = threading.Event()

    def held_run(config, control=None, dataset=None):
        """The real engine, held after step 4 until the test has paused it (a fast run would end first)."""
        for event in run(config, control, dataset):
            yield event
            if isinstance(event, Step) and event.step == 4:
                hold.wait(60)

    window = make_window(run_fn=held_run)
    save_screenshot(window, "empty")
    assert window.dataset_panel.page() == 0 and window.dataset_panel.sample_button.isVisible()

    with qtbot.waitSignal(window.dataset_loaded, timeout=RUN_TIMEOUT_MS):
        window.dataset_panel.sample_button.click()
    assert window.dataset_panel.table.rowCount() == 10
    assert window.act_run.isEnabled()
    save_screenshot(window, "loaded")

    quick(window, steps=12, snapshot_every=2, eval_every=4)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        window.act_run.trigger()
        try:
            qtbot.waitUntil(lambda: window.plots.point_count("gap") >= 4 and window.grid.step is not None,
                            timeout=RUN_TIMEOUT_MS)
            window.act_pause.trigger()
            qtbot.wait(300)                        # one view refresh
            save_screenshot(window, "running")
            assert window.act_pause.text() == "&Resume" and "paused" in window.run_panel.info.text()
            play = window.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay).pixmap(16).toImage()
            assert window.act_pause.icon().pixmap(16).toImage() == play       # the button shows "resume"
            window.act_pause.trigger()
            assert window.act_pause.text() == "&Pause"
            assert window.act_pause.icon().pixmap(16).toImage() != play
        finally:
            hold.set()
    assert finished.args == ["finished"]
    assert window.plots.point_count("gap") == 12
    assert window.plots.point_count("distilled_accuracy") >= 3
    assert window.plots.point_count("teacher_rel_gap") >= 1
    grid = window.grid
    assert grid.image.image is not None and max(grid.image.image.shape[:2]) > 8
    # class names label the rows from the left axis (the columns from the bottom one), outside the view
    # (they were clipped inside it); only that axis is shown
    shown, hidden = (grid.bottom, grid.axis) if grid.by_column else (grid.axis, grid.bottom)
    ticks = shown._tickLevels[0]                       # pyqtgraph keeps setTicks' levels here
    assert [name for _, name in ticks] == [str(d) for d in range(10)]
    assert shown.isVisible() and not hidden.isVisible()
    assert window.results.table.rowCount() > 5
    save_screenshot(window, "finished")

    target = window.export_result(tmp_path / "distilled")
    assert target is not None
    for name in ("manifest.json", "distilled.npz", "curves.csv", "grid.png", "images"):
        assert (target / name).exists(), name
    exported = load_distilled(target)
    assert len(exported.images) == 10 and exported.pixels.shape[1:] == (8, 8, 1)

    png = window.export_plots_png(tmp_path / "plots.png")
    csv_path = window.export_curves_csv(tmp_path / "curves.csv")
    assert png.stat().st_size > 5000
    rows = list(csv.DictReader(csv_path.open()))
    assert sum(r["phase"] == "distill" for r in rows) == 12 and "fenchel_young" in rows[0]


def test_stop_mid_run_keeps_result_for_export(qtbot, window, tmp_path):
    load(qtbot, window)
    quick(window, steps=100_000, eval_every=0, snapshot_every=5)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.start_run()
        qtbot.waitUntil(lambda: window.plots.point_count("gap") >= 3, timeout=RUN_TIMEOUT_MS)
        window.act_stop.trigger()
        assert not window.act_stop.isEnabled()
        assert window.statusBar().currentMessage() == "Stopping after the current step…"
    assert finished.args == ["stopped"]
    assert window.result is not None and window.act_export.isEnabled()
    assert window.plots.point_count("gap") < 100_000
    target = window.export_result(tmp_path / "stopped")
    assert len(load_distilled(target).images) == 10


def test_stop_before_the_first_step_says_the_teacher_is_still_fitted(qtbot, window):
    """Stop while the data load or the teacher is fitted: the status says the teacher is still fitted
    (it said "Stopping after the current step…" through a minute-long Nyström solve), and the run
    keeps its initial images at step 0."""
    load(qtbot, window)
    quick(window, steps=100_000, eval_every=0)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.start_run()
        window.act_stop.trigger()
        assert window.statusBar().currentMessage().startswith(
            "Stopping before the first step: once the teacher is fitted")
    assert finished.args == ["stopped"]
    assert window.result is not None and window.result.metrics["steps"] == 0


def test_cancel_discards_the_run(qtbot, window):
    load(qtbot, window)
    quick(window, steps=100_000, eval_every=0)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.start_run()
        window.act_cancel.trigger()               # also cancels during data preparation / teacher solve
    assert finished.args == ["cancelled"]
    assert window.result is None and not window.act_export.isEnabled()
    assert window.error_dialog is None


def test_export_never_overwrites_silently(qtbot, window, tmp_path, answer):
    load(qtbot, window)
    quick(window, steps=2)
    assert run_to_end(qtbot, window) == "finished"
    target = window.export_result(tmp_path / "out")
    marker = (target / "manifest.json").stat().st_mtime_ns

    answer["reply"] = answer["reply"].No
    assert window.export_result(target) is None
    assert answer["asked"] and (target / "manifest.json").stat().st_mtime_ns == marker

    answer["reply"] = answer["reply"].Yes
    assert window.export_result(target) == target
    assert load_distilled(target).images.shape[0] == 10


def test_closing_mid_run_asks_stops_and_leaves_no_thread(qtbot, window, monkeypatch, choice):
    """Quit during a run offers Stop and quit (the result is kept, and the export question follows),
    Discard and quit (nothing kept, no further question) and Keep running (the Escape answer). The
    export question goes through the window's shell (the ``choice`` fixture), the quit question through
    ``MainWindow.choose`` patched here."""
    from dgkip_gui.main_window import DISCARD_AND_QUIT, KEEP_RUNNING, MainWindow, STOP_AND_QUIT
    replies, asked = [], []

    def choose(self, title, text, answers):
        asked.append((title, answers))
        return replies.pop(0)
    monkeypatch.setattr(MainWindow, "choose", choose)
    load(qtbot, window)
    quick(window, steps=100_000, eval_every=0)
    assert window.start_run()
    qtbot.waitUntil(lambda: window.plots.point_count("gap") >= 2, timeout=RUN_TIMEOUT_MS)

    replies[:] = [KEEP_RUNNING]
    window.close()
    assert window.isVisible() and window.running, "Keep running keeps the run going"
    assert asked[-1] == ("Quit during a run?", (STOP_AND_QUIT, DISCARD_AND_QUIT, KEEP_RUNNING))

    # Stop and quit: the run stops with its result, the export question comes; Cancel there keeps the
    # window open with the result
    replies[:] = [STOP_AND_QUIT]
    choice["reply"] = "Cancel"
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        window.close()
    assert finished.args == ["stopped"]
    qtbot.waitUntil(lambda: len(choice["asked"]) == 1, timeout=10_000)
    assert choice["asked"][0][0] == "Export the distilled set first?"
    assert window.isVisible() and window.result is not None and not replies

    # a new run (discarding the stopped result), then Discard and quit: nothing kept, so the window
    # closes without another export question
    choice["reply"] = "Discard"
    replies[:] = [DISCARD_AND_QUIT]
    assert window.start_run()
    qtbot.waitUntil(lambda: window.plots.point_count("gap") >= 2, timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        window.close()
    assert finished.args == ["cancelled"]
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10_000)
    assert [title for title, _ in choice["asked"]] == ["Export the distilled set first?"] * 2   # 2nd: the new run
    assert len(asked) == 3 and not replies
    assert not window.busy


def test_cancel_of_a_long_run_asks_and_stop_keeps_it(qtbot, window, monkeypatch):
    """Cancel on a run that has stepped for ASK_BEFORE_CANCEL_S asks (Cancel sits beside Stop, and one
    slip threw hours away): Keep running goes on, Stop and keep ends it with its result, Discard the run
    cancels. A run younger than that is cancelled without a question."""
    import dgkip_gui.main_window as mw
    replies, asked = [], []

    def choose(self, title, text, answers):
        asked.append((title, text, answers))
        return replies.pop(0)
    monkeypatch.setattr(mw.MainWindow, "choose", choose)
    load(qtbot, window)
    quick(window, steps=100_000, eval_every=0)

    assert window.start_run()                                   # young: no question
    qtbot.waitUntil(lambda: window.plots.point_count("gap") >= 2 and window.grid.step is not None,
                    timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        window.cancel_run()
    assert finished.args == ["cancelled"] and not asked
    assert window.grid.caption.text() == f"step {window.grid.step:,}: cancelled, nothing kept"   # images stay

    monkeypatch.setattr(mw, "ASK_BEFORE_CANCEL_S", 0.0)
    assert window.start_run()
    qtbot.waitUntil(lambda: window.plots.point_count("gap") >= 2, timeout=RUN_TIMEOUT_MS)
    replies[:] = [mw.KEEP_RUNNING]
    window.cancel_run()
    qtbot.wait(200)
    assert window.running and asked[-1][0] == "Cancel the run?"
    assert asked[-1][2] == (mw.STOP_INSTEAD, mw.DISCARD_RUN, mw.KEEP_RUNNING) and "steps" in asked[-1][1]
    replies[:] = [mw.STOP_INSTEAD]
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        window.cancel_run()
    assert finished.args == ["stopped"] and window.result is not None

    assert window.start_run()                                   # the choice fixture discards the result
    qtbot.waitUntil(lambda: window.plots.point_count("gap") >= 2, timeout=RUN_TIMEOUT_MS)
    replies[:] = [mw.DISCARD_RUN]
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        window.cancel_run()
    assert finished.args == ["cancelled"] and window.result is None and len(asked) == 3
