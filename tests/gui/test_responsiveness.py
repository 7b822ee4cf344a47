"""Quality bar while a run goes: the GUI thread keeps ticking and the engine keeps its speed.

A 10 ms heartbeat QTimer on the GUI thread measures the longest stall during a real run on the
sample dataset and on an MNIST class pair (when ../shared/datasets is present); the same engine
iterator consumed on a plain thread without the GUI gives the headless speed. Numbers go to
``tests/_artifacts/responsiveness-<case>.json``. The bound: the 99th-percentile gap at most 50 ms
above an idle event loop's over as long as the run takes, and no gap 150 ms above the idle maximum
(shared CI runners and busy workstations deschedule threads for tens of milliseconds; that is not
the app's doing). The engine
runs single-threaded here, so its OpenMP threads do not compete with the GUI thread for the cores of
a small runner and the comparison measures the GUI's cost, not OpenMP's contention.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QElapsedTimer, QTimer

from engine.distill import run

from gui_helpers import ARTIFACTS, RUN_TIMEOUT_MS, load, quick

pytestmark = pytest.mark.gui
STEPS = 200
MNIST = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "mnist-train.npz"
CASES = {
    "sample": ("sample", dict(max_per_class=None)),
    # an MNIST class pair at the bench's size (1,200 training and 1,902 test images of 784 pixels)
    "mnist-pair": (MNIST, dict(classes=["3", "5"], max_per_class=600)),
}


class Heartbeat:
    """Counts the longest gap between the ticks of a 10 ms timer on the GUI thread."""

    def __init__(self) -> None:
        self.clock = QElapsedTimer()
        self.timer = QTimer(interval=10)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[int] = []

    def __enter__(self) -> "Heartbeat":
        self.clock.start()
        self._last = 0
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = self.clock.elapsed()
        self.gaps.append(now - self._last)
        self._last = now

    @property
    def max_stall_ms(self) -> int:
        return max(self.gaps, default=0)

    @property
    def p99_stall_ms(self) -> int:
        """The gap only 1 % of ticks exceed: a redraw every 250 ms is 4 % of ticks, so a GUI that
        stalls on each redraw shows here, where two host hiccups in a run do not."""
        return int(np.percentile(self.gaps, 99)) if self.gaps else 0


def headless_steps_per_second(config, dataset) -> float:
    """The engine iterator alone, consumed on a plain thread (as the GUI's worker thread does)."""
    done = []
    thread = threading.Thread(target=lambda: done.extend(run(config, None, dataset)))
    thread.start()
    thread.join()
    return done[-1].metrics["steps_per_second"]


@pytest.fixture
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("case", sorted(CASES))
def test_heartbeat_and_speed_during_a_run(qtbot, window, one_torch_thread, case):
    path, changes = CASES[case]
    if path != "sample" and not Path(path).exists():
        pytest.skip(f"{path} not present (../shared/datasets)")
    load(qtbot, window, path)                         # also warms the engine up (see dgkip_gui.warmup)
    quick(window, steps=STEPS, eval_every=50, snapshot_every=10, **changes)
    config = window.settings.config()

    headless = headless_steps_per_second(config, window.dataset)
    with Heartbeat() as idle:            # as long as the run takes: a host's hiccups are as likely in both
        qtbot.wait(round(1000 * STEPS / headless))
    with Heartbeat() as busy, qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS):
        assert window.start_run()
    gui = window.result.metrics["steps_per_second"]

    numbers = {"case": case, "steps": STEPS, "idle_max_stall_ms": idle.max_stall_ms, "run_max_stall_ms": busy.max_stall_ms,
               "idle_p99_stall_ms": idle.p99_stall_ms, "run_p99_stall_ms": busy.p99_stall_ms,
               "headless_steps_per_s": round(headless, 1), "gui_steps_per_s": round(gui, 1),
               "gui_over_headless": round(gui / headless, 3)}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"responsiveness-{case}.json").write_text(json.dumps(numbers, indent=2))
    print(numbers)
    assert busy.p99_stall_ms <= 50 + idle.p99_stall_ms, numbers
    assert busy.max_stall_ms <= 150 + idle.max_stall_ms, numbers     # no single long freeze either
    assert gui >= 0.5 * headless, numbers          # loose: single runs on a shared machine are noisy
