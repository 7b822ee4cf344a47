"""The teacher settings in the window: the form round-trips them, the estimate names the plan, and a
Nyström run shows its kernel-row progress and reports which teacher ran."""
from __future__ import annotations

import pytest

from engine.events import Progress, TeacherDone

from dgkip_gui.widgets.results_view import rows
from gui_helpers import load, quick, run_to_end

pytestmark = pytest.mark.gui


def test_teacher_fields_round_trip_and_reach_the_run(qtbot, make_window):
    window = make_window()
    load(qtbot, window)
    quick(window, teacher="nystrom", centres=60, centre_selection="kmeans++", certify_exact=True)
    cfg = window.settings.config()
    assert (cfg.teacher, cfg.centres, cfg.centre_selection, cfg.certify_exact) == ("nystrom", 60, "kmeans++", True)
    window.settings.update_estimate()
    assert "Nyström teacher, 60 centres" in window.settings.estimate.line.text()
    assert "Nyström teacher with 60 centres" in window.settings.estimate.details.text()
    # an empty centres field means "the most that fit", i.e. None in the config
    window.settings.set_config(cfg.replace(centres=None))
    assert window.settings.config().centres is None

    seen = []
    original = window.run_session.on_partial_result

    def spy(event):
        seen.append(event)
        original(event)
    window.run_session.on_partial_result = spy
    assert run_to_end(qtbot, window) == "finished"
    done = next(e for e in seen if isinstance(e, TeacherDone))
    assert done.kind == "nystrom" and done.centres is not None and done.centres <= 40 * 10
    assert any(isinstance(e, Progress) and e.stage == "kernel" for e in seen)
    assert any(isinstance(e, Progress) and e.stage == "certify-exact" for e in seen)
    metrics = window.result.metrics
    assert metrics["teacher_kind"] == "nystrom" and metrics["radius_to_exact_teacher"] >= metrics["radius"]
    shown = {label: value for label, value, _ in rows(metrics)}
    assert shown["Teacher"] == "nystrom" and shown["Nyström centres M"] == f"{done.centres:,}"
