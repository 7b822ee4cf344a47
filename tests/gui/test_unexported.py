"""A finished result that no export holds is never forgotten without asking: opening another dataset,
a new run and quitting each offer Export… / Discard / Cancel first."""
from __future__ import annotations

from engine.export import load_distilled
from gui_helpers import RUN_TIMEOUT_MS, image_folder, load, quick, run_to_end

QUESTION = "Export the distilled set first?"


def test_cancel_keeps_the_result_and_does_nothing(qtbot, window, tmp_path, choice):
    load(qtbot, window)
    quick(window, steps=2)
    assert run_to_end(qtbot, window) == "finished"
    result, dataset = window.result, window.dataset
    folder = image_folder(tmp_path / "other", {"a": 12, "b": 12})

    choice["reply"] = "Cancel"
    assert not window.load_dataset(folder)
    assert not window.start_run()
    window.close()
    assert window.isVisible() and window.result is result and window.dataset is dataset
    assert window.act_export.isEnabled()
    titles, texts = zip(*choice["asked"])
    assert titles == (QUESTION,) * 3
    assert texts[0].startswith("The distilled set of the last run (digits (sample), DGKIP cross-entropy, 1 per "
                               "class) is not exported. Opening another dataset discards it.")
    assert "A new run discards it" in texts[1] and "Quitting discards it" in texts[2]
    choice["reply"] = "Discard"                              # the fixture's own close may go ahead


def test_export_first_writes_it_then_goes_ahead(qtbot, window, tmp_path, choice, monkeypatch):
    load(qtbot, window)
    quick(window, steps=2)
    assert run_to_end(qtbot, window) == "finished"
    folder = image_folder(tmp_path / "other", {"a": 12, "b": 12})

    choice["reply"] = "Export…"
    monkeypatch.setattr(window.run_session, "ask_export_folder", lambda: None)    # the folder dialog cancelled
    assert not window.load_dataset(folder)
    assert window.result is not None and window.dataset.name == "digits (sample)"

    monkeypatch.setattr(window.run_session, "ask_export_folder", lambda: tmp_path / "kept")
    with qtbot.waitSignal(window.dataset_loaded, timeout=RUN_TIMEOUT_MS):
        assert window.load_dataset(folder)
    assert load_distilled(tmp_path / "kept").images.shape[0] == 10
    assert window.result is None and window.dataset.name == "other"
    assert len(choice["asked"]) == 2


def test_an_exported_result_goes_without_a_question(qtbot, window, tmp_path, choice):
    load(qtbot, window)
    quick(window, steps=2)
    assert run_to_end(qtbot, window) == "finished"
    assert window.export_result(tmp_path / "out") is not None
    assert run_to_end(qtbot, window) == "finished"         # the exported result is replaced silently
    assert choice["asked"] == []

    choice["reply"] = "Discard"                             # the new one is not exported: quitting asks
    window.close()
    assert not window.isVisible()
    assert [title for title, _ in choice["asked"]] == [QUESTION]


def test_a_stopped_run_counts_and_a_cancelled_one_does_not(qtbot, window, choice):
    load(qtbot, window)
    quick(window, steps=100_000, eval_every=0)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS):
        assert window.start_run()
        qtbot.waitUntil(lambda: window.plots.point_count("gap") >= 2, timeout=RUN_TIMEOUT_MS)
        window.act_stop.trigger()
    assert window.run_session.unexported
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as finished:
        assert window.start_run()                          # "Discard" (the fixture's default answer)
        window.act_cancel.trigger()
    assert finished.args == ["cancelled"] and not window.run_session.unexported
    assert len(choice["asked"]) == 1
    window.close()
    assert not window.isVisible() and len(choice["asked"]) == 1


def test_a_cancelled_quit_never_closes_the_window_later(qtbot, make_window, tmp_path, choice):
    """Quit during a load while a result is unexported: the load is cancelled, then the question comes;
    Cancel keeps the window, and a later job's end must not close it unasked."""
    import time
    from engine.data import load_dataset
    calls = {"n": 0}

    def load_fn(path, progress=None, **kw):
        calls["n"] += 1
        if calls["n"] == 2:                      # the second load waits until it is cancelled
            while True:
                progress(0, 1)
                time.sleep(0.01)
        return load_dataset(path, progress=progress, **kw)

    window = make_window(load_fn=load_fn)
    load(qtbot, window)
    quick(window, steps=2)
    assert run_to_end(qtbot, window) == "finished"
    folder = image_folder(tmp_path / "other", {"a": 12, "b": 12})
    choice["reply"] = "Discard"
    assert window.load_dataset(folder)           # the waiting load; the result is still there
    choice["reply"] = "Cancel"
    window.close()                               # cancels the load; once it ended: the question, Cancel
    qtbot.waitUntil(lambda: not window.busy, timeout=RUN_TIMEOUT_MS)
    qtbot.wait(100)
    assert window.isVisible() and window.result is not None
    choice["reply"] = "Discard"
    with qtbot.waitSignal(window.dataset_loaded, timeout=RUN_TIMEOUT_MS):
        assert window.load_dataset(folder)       # drops the result; its end must not close the window
    qtbot.wait(200)
    assert window.isVisible() and window.dataset.name == "other"
    assert [title for title, _ in choice["asked"]] == [QUESTION] * 3
