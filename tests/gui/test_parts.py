"""Units behind the window: event hand-over, the image mosaic, progress arithmetic."""
from __future__ import annotations

import numpy as np
import pytest

from engine.events import Snapshot, Step
from dgkip_gui.widgets.image_grid import GAP, columns_show_larger, mosaic
from dgkip_gui.widgets.run_panel import RateMeter, format_duration
from dgkip_gui.worker import EventQueue

pytestmark = pytest.mark.gui


def test_event_queue_keeps_order_and_only_the_latest_snapshot():
    queue = EventQueue(latest_only=(Snapshot,))
    steps = [Step(i, 9, 1.0, 1.0, 0.5, 0.5, 1.0, 0.1 * i) for i in range(1, 4)]
    snaps = [Snapshot(i, np.zeros((2, 4, 4, 1), np.float32), np.array([0, 1])) for i in (1, 2)]
    for event in (steps[0], snaps[0], steps[1], snaps[1], steps[2]):
        queue.put(event)
    assert queue.drain() == [*steps, snaps[1]]
    assert queue.drain() == []


def test_mosaic_puts_each_class_on_its_row():
    images = np.stack([np.full((3, 2, 1), v, np.float32) for v in (0.1, 0.2, 0.9)])
    grid = mosaic(images, np.array([1, 0, 1]), n_classes=2)
    assert grid.shape == (2 * 3 + GAP, 2 * 2 + GAP, 3)
    assert np.allclose(grid[0, 0], 0.2) and np.allclose(grid[3 + GAP, 0], 0.1)
    assert np.allclose(grid[3 + GAP, 2 + GAP], 0.9)
    rgb = mosaic(np.full((1, 2, 2, 3), 255, np.uint8), np.array([0]), 1)
    assert rgb.shape == (2, 2, 3) and np.allclose(rgb, 1.0)


def test_mosaic_by_column_puts_each_class_in_its_column():
    images = np.stack([np.full((3, 2, 1), v, np.float32) for v in (0.1, 0.2, 0.9)])
    grid = mosaic(images, np.array([1, 0, 1]), n_classes=2, by_column=True)
    assert grid.shape == (2 * 3 + GAP, 2 * 2 + GAP, 3)
    assert np.allclose(grid[0, 0], 0.2) and np.allclose(grid[0, 2 + GAP], 0.1)
    assert np.allclose(grid[3 + GAP, 2 + GAP], 0.9) and np.allclose(grid[3 + GAP, 0], grid[2, 2])   # gap colour


def test_columns_only_where_they_show_the_tiles_larger_and_the_names_fit():
    # IPC 1, ten 28 × 28 classes in a 300 × 160 view: a column of ten is 289 px tall (scale 0.55), a row
    # of ten 289 px wide (scale 1.04)
    assert columns_show_larger((28, 28), 1, 10, (300, 160), name_width=8)
    assert not columns_show_larger((28, 28), 1, 10, (300, 160), name_width=60)     # "automobile" would overlap
    assert not columns_show_larger((28, 28), 10, 10, (300, 160), name_width=8)     # square: rows as before
    assert not columns_show_larger((28, 28), 1, 10, (100, 600), name_width=8)      # a tall, narrow view
    assert not columns_show_larger((28, 28), 1, 0, (300, 160), name_width=0)       # no classes: rows


def test_rate_meter_and_durations():
    meter = RateMeter(window_s=10)
    assert meter.rate() is None
    for step in range(1, 11):
        meter.add(step, 0.5 * step)
    assert meter.rate() == pytest.approx(2.0)
    assert format_duration(75) == "1:15" and format_duration(3725) == "1:02:05"


def test_status_bar_device_follows_the_engine(monkeypatch):
    """The status bar names the device by the engine's rule (engine.device.resolve_device): a device the
    machine lacks is said to be unavailable (a run would refuse it), not shown as if it would be used."""
    import torch

    from dgkip_gui.system_info import device_description

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_description("cuda") == "cuda: not available"
    assert device_description("cpu").startswith("cpu: ")


def test_one_byte_formatter_for_engine_and_gui():
    from engine.data.report import format_bytes

    assert [format_bytes(n) for n in (512, 1536, 3 * 2**30, -2048)] == ["512 bytes", "1.5 KiB", "3.0 GiB",
                                                                        "-2.0 KiB"]


def test_run_bar_groups_its_counts_like_the_status_line(qtbot):
    """The progress bar reads "6,575 / 100,000" beside "Step 6,575 of 100,000" (Qt's %v / %m printed
    6575 / 100000), at the teacher, during the steps and after the run."""
    from dgkip_gui.widgets.run_panel import RunPanel
    panel = RunPanel([], [])
    qtbot.addWidget(panel)
    panel.teacher(12_345, 90_000, 1e-3, "coordinate update")
    assert panel.bar.text() == "teacher 12,345"
    panel.step(6_575, 100_000)
    assert panel.bar.text() == "6,575 / 100,000" and panel.info.text().startswith("Step 6,575 of 100,000")
    panel.idle("Stopped", 6_600, 100_000)
    assert panel.bar.text() == "6,600 / 100,000"


def test_a_class_strip_has_no_empty_slots(qtbot):
    """A class with fewer images than the strip's slots (an export: one per class) shows only them,
    not grey blocks after them."""
    import numpy as np
    from dgkip_gui.widgets.dataset_panel import THUMBS_PER_CLASS, class_strip
    x = np.full((3, 8, 8, 1), 255, np.uint8)
    one, full = class_strip(x, np.array([0, 1, 1]), 0), class_strip(np.repeat(x, 4, 0), np.zeros(12, np.int64), 0)
    assert one.height() == full.height() and one.width() * THUMBS_PER_CLASS <= full.width() + THUMBS_PER_CLASS
    image = one.toImage()
    assert all(image.pixelColor(i, image.height() // 2).lightness() == 255 for i in range(image.width()))
