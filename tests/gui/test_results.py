"""Results in words: human labels and tooltips (no raw metric keys), the certificate explained next to
what was measured, "± std" only with two or more seeds."""
from __future__ import annotations

import re

import pytest

from engine.config import DistillConfig
from dgkip_gui.widgets.transfer_panel import accuracy_text
from dgkip_gui.widgets.results_view import COMPANIONS, METRICS, RunResults, certificate_note

from gui_helpers import load, quick, run_to_end

pytestmark = pytest.mark.gui

UNCERTIFIED = {"teacher_test_accuracy": 0.95, "distilled_test_accuracy": 0.9, "certified_consistency": 0.0,
               "agreement_with_teacher": 0.931, "radius": 4.6, "distance_to_teacher": 2.0,
               "radius_for_half_certified": 0.23, "gap": 0.0106, "fenchel_young": 0.0006, "kernel_match": 0.01,
               "n_train": 1437, "teacher_solver": "newton-cg"}


def test_uncertified_run_says_why_and_what_would_change_it():
    note = certificate_note(UNCERTIFIED, DistillConfig(ipc=1, lam=1e-3, kernel="ntk-fc"))
    assert note.startswith("Nothing certified: the radius r = 4.6 is too large.")
    assert "below r = 0.23" in note and "a gap 400× smaller" in note        # (4.6 / 0.23)² = 400
    assert "G ≤ 2.6e-05" in note                                           # λ r²/2 at r = 0.23
    assert "93.1 % of test points" in note and "2.3× the measured distance 2" in note
    assert "more images per class (now 1; the kernel-matching part is 94 %" in note
    assert "explicit-feature kernel (rf-fc, rf-conv)" in note and "a larger λ (now 0.001" in note
    note = certificate_note(UNCERTIFIED, DistillConfig(ipc=1, lam=1e-3, kernel="rf-fc"))
    assert "explicit-feature kernel" not in note                           # already one


def test_certified_run_states_the_share_and_the_measurements():
    metrics = dict(UNCERTIFIED, certified_consistency=0.937, radius=0.07, distance_to_teacher=0.05)
    note = certificate_note(metrics, DistillConfig())
    assert note.startswith("Certified: 93.7 % of test predictions provably match the teacher's")
    assert "1.4× the measured distance" in note


def test_table_uses_human_labels_with_tooltips(qtbot):
    view = RunResults()
    qtbot.addWidget(view)
    view.show_metrics(dict(UNCERTIFIED, future_metric=1.5), DistillConfig())
    labels = view.labels()
    assert "Certified consistency" in labels and "Teacher test accuracy" in labels
    assert not any(re.search(r"\w_\w", label) for label in labels)          # no raw keys
    assert "Future metric" in labels                                      # unknown keys are not dropped
    row = labels.index("Certified consistency")
    assert view.table.item(row, 1).text() == "0.00 %  (measured agreement 93.10 %)"
    assert "margin" in view.table.item(row, 1).toolTip()
    row = labels.index("Radius bound r = √(2G/λ)")
    assert view.table.item(row, 1).text() == "4.6  (measured distance 2)"
    assert all(view.table.item(r, 0).toolTip() for r in range(view.table.rowCount()))
    assert view.note.isVisible() or not view.isVisible()
    assert "Nothing certified" in view.note.text()


def test_every_metric_of_a_real_run_has_a_label(qtbot, window):
    load(qtbot, window)
    quick(window)
    assert run_to_end(qtbot, window) == "finished"
    metrics = window.result.metrics
    known = set(METRICS) | {key for key, _, _ in COMPANIONS.values()}      # shown beside their row's value
    assert set(metrics) <= known, set(metrics) - known
    assert window.results.note.text()                                     # the certificate, explained


def test_plus_minus_only_with_two_or_more_seeds():
    assert accuracy_text([0.9]) == "90.00 %"
    assert accuracy_text([0.9, 0.92]) == "91.00 ± 1.00 %"


def test_the_note_scrolls_where_the_area_is_short_and_is_whole_where_it_is_tall(qtbot):
    view = RunResults()
    qtbot.addWidget(view)
    view.show_metrics(UNCERTIFIED, DistillConfig())
    view.resize(320, 170)                     # the results area of a 1024 × 700 window
    view.show()
    note = view.note
    qtbot.waitUntil(lambda: note.verticalScrollBar().maximum() > 0)        # the rest is a scroll away
    assert note.height() >= 3 * note.fontMetrics().lineSpacing()
    assert view.table.height() >= view.table.verticalHeader().defaultSectionSize()  # the table stays in view
    view.resize(320, 700)
    qtbot.waitUntil(lambda: note.verticalScrollBar().maximum() == 0)       # tall enough: all of it shown
    assert note.height() < 350


def test_kip_and_binary_metrics_have_their_own_rows():
    """Issue 17: KIP's own accuracy and ridge, and the label-column count, are labelled rows; a DGKIP
    run's metrics (without the KIP keys) show no KIP rows."""
    from dgkip_gui.widgets.results_view import rows

    shown = {label: value for label, value, _ in rows({"distilled_test_accuracy": 0.5381, "kip_test_accuracy": 0.937,
                                                        "kip_ridge": "trace", "columns": 10})}
    assert shown["KIP model test accuracy"] == "93.70 %" and shown["KIP ridge"] == "trace"
    assert shown["Label columns"] == "10"
    assert not any(label.startswith("KIP") for label, _, _ in rows({"distilled_test_accuracy": 0.9, "columns": 1}))


def test_thread_choice_has_a_row_with_its_last_trial_and_list_metrics_are_no_rows():
    """The steps' CPU threads are a labelled row, with the last timed trial's medians beside them; a
    list metric is no row of its own (formatting one as a number raised on the Done event)."""
    from dgkip_gui.widgets.results_view import rows

    trials = [{"step": 25, "one_thread_s": 0.005, "threads": 2, "threads_s": 0.004, "chosen": 2}]
    shown = {label: value for label, value, _ in rows({"steps": 100, "step_threads": 2, "thread_trials": trials,
                                                        "future_list": [1, 2]})}
    assert shown["Step threads"] == "2  (timed 1: 5.00 ms, 2: 4.00 ms)"
    untimed = {label: value for label, value, _ in rows({"step_threads": 1, "thread_trials": []})}
    assert untimed["Step threads"] == "1"
    assert not any("trials" in label.lower() or "future" in label.lower() for label in shown)
