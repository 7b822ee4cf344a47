"""HiDPI: the window at its 1024 × 700 minimum on a 200 % (and 150 %) screen renders at the device
pixel ratio asked for with no text cut off, after loading the sample and distilling a few steps.

Qt's offscreen platform emulates such a screen with ``QT_SCALE_FACTOR`` (or ``QT_FONT_DPI``, which Qt 6
turns into the same device pixel ratio, as the xcb platform does with a 4K screen's ``Xft.dpi`` of
192). Layouts stay in logical pixels; what changes is every pixmap, font raster and the plots'
scene, drawn at 2×. What the emulation cannot show is a real screen's font hinting and a platform
theme's own metrics (see docs/screenshots/ for the app under a real X server).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from clipping import clipped_widgets

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]


def probe(**env: str) -> dict:
    """Run tests/gui/clipping.py in a fresh process with ``env`` added (offscreen)."""
    inherited = {k: v for k, v in os.environ.items() if k not in ("QT_SCALE_FACTOR", "QT_FONT_DPI")}
    environment = {**inherited, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT), **env}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "gui" / "clipping.py")], env=environment,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("env, ratio", [({"QT_SCALE_FACTOR": "2"}, 2.0), ({"QT_SCALE_FACTOR": "1.5"}, 1.5),
                                        ({"QT_FONT_DPI": "192"}, 2.0)])
def test_minimum_size_on_a_hidpi_screen_cuts_no_text(env, ratio):
    result = probe(**env)
    assert result["dpr"] == ratio
    assert result["size"] == [1024, 700]
    assert result["grab"] == [round(1024 * ratio), round(700 * ratio)]    # drawn at device resolution
    assert result["outcome"] == "finished"
    assert result["clipped"] == []


def test_the_clipping_check_finds_cut_texts(qtbot):
    box = QWidget()
    qtbot.addWidget(box)
    layout = QHBoxLayout(box)
    squeezed = QPushButton("A button with a long caption")
    squeezed.setFixedWidth(40)
    label = QLabel("A label that does not fit in twenty pixels")
    label.setFixedWidth(20)
    whole = QPushButton("OK")
    for widget in (squeezed, label, whole):
        layout.addWidget(widget)
    box.show()
    found = clipped_widgets(box)
    assert len(found) == 2
    assert any("long caption" in text for text in found) and any("twenty pixels" in text for text in found)
