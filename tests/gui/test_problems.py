"""Skipped files are named in the dataset panel itself, with the style's standard icons (no emoji)."""
from __future__ import annotations

from PySide6.QtCore import QPoint, QRect
import pytest

from engine.data.report import Problem
from dgkip_gui.widgets.problems_view import middle_elided, skipped_summary

from gui_helpers import image_folder, load

pytestmark = pytest.mark.gui


def test_unreadable_images_are_named_in_the_panel(qtbot, window, tmp_path):
    folder = image_folder(tmp_path / "shapes", {"circle": 6, "square": 6})
    (folder / "circle" / "broken.png").write_bytes(b"this is not a PNG")
    (folder / "square" / "empty.png").write_bytes(b"")
    load(qtbot, window, folder)
    view = window.dataset_panel.problems
    assert view.isVisible() and view.summary.isVisible() and view.icon.isVisible()
    assert view.summary_text == "2 files skipped: circle/broken.png, square/empty.png"
    assert "circle/broken.png" in view.summary.text()
    assert not view.icon.pixmap().isNull()
    panel = window.dataset_panel
    where = QRect(view.summary.mapTo(panel, QPoint(0, 0)), view.summary.size())
    assert panel.rect().contains(where), "the summary line is cut off"
    texts = [view.list.item(i).text() for i in range(view.list.count())]
    assert any(t.startswith("circle/broken.png: cannot read this image") for t in texts), texts
    assert any(t.startswith("square/empty.png: empty file") for t in texts), texts
    for i in range(view.list.count()):
        assert not view.list.item(i).icon().isNull()
    assert not any(mark in t for t in texts for mark in ("⛔", "⚠"))


def test_a_clean_dataset_shows_no_problems_box(qtbot, window, tmp_path):
    load(qtbot, window, image_folder(tmp_path / "clean", {"a": 4, "b": 4}))
    assert not window.dataset_panel.problems.isVisible()


def test_summary_names_the_first_few_and_counts_the_rest():
    problems = [Problem(f"/data/c{i}/{i}.png", "cannot read", "delete it", "error") for i in range(5)]
    problems.append(Problem("/data", "grayscale converted", ""))
    assert skipped_summary(problems, "/data") == "5 files skipped: c0/0.png, c1/1.png, c2/2.png and 2 more"
    assert skipped_summary(problems[:1], "/data") == "1 file skipped: c0/0.png"
    assert skipped_summary(problems[-1:], "/data") == ""
    long = "x" * 60 + ".png"
    assert middle_elided(long) == "x" * 19 + "…" + "x" * 16 + ".png" and len(middle_elided(long)) == 40
