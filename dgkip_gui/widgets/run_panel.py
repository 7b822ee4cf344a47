"""Run controls with progress (stage, steps/s, ETA); the results of a run are in
:mod:`dgkip_gui.widgets.results_view`."""
from __future__ import annotations

from collections import deque
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QToolButton, QWidget

from dgkip_gui.widgets.elided import ElidedLabel


class RateMeter:
    """Steps per second over a sliding window of the engine's own clock (``Step.elapsed``)."""

    def __init__(self, window_s: float = 3.0) -> None:
        self.window_s = window_s
        self._points: deque[tuple[float, int]] = deque()

    def add(self, step: int, elapsed: float) -> None:
        self._points.append((elapsed, step))
        while len(self._points) > 2 and elapsed - self._points[0][0] > self.window_s:
            self._points.popleft()

    def rate(self) -> float | None:
        """Steps per second, or ``None`` before two steps were seen."""
        if len(self._points) < 2:
            return None
        (t0, s0), (t1, s1) = self._points[0], self._points[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else None

    def clear(self) -> None:
        self._points.clear()


def format_duration(seconds: float) -> str:
    """``75`` → ``"1:15"``, ``3725`` → ``"1:02:05"``."""
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class RunPanel(QWidget):
    """A strip of buttons (bound to the window's actions), a progress bar, a status line and, at the
    end, the buttons of ``end_actions`` (export, transfer). The first run action (Distil) and the end
    actions show their text; Pause, Stop and Cancel show their standard icons (names and shortcuts in
    their tooltips), so the strip fits a 1024-pixel-wide window."""

    def __init__(self, run_actions: list[QAction], end_actions: list[QAction], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        self.buttons: dict[str, QToolButton] = {}
        for i, action in enumerate(run_actions):
            layout.addWidget(self._button(action, with_text=i == 0))
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.bar.setMinimumWidth(120)
        self.info = ElidedLabel("Load a dataset, then press Distil.")     # elides, never widens the window
        self.blocked = ElidedLabel()          # why Distil is off, in place of the status line
        self.blocked.setStyleSheet("color: #b3261e; font-weight: bold;")
        self.blocked.hide()
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.info, 2)
        layout.addWidget(self.blocked, 2)
        for action in end_actions:
            layout.addWidget(self._button(action))
        self.meter = RateMeter()

    def _button(self, action: QAction, with_text: bool = True) -> QToolButton:
        button = QToolButton()
        button.setDefaultAction(action)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon if with_text or action.icon().isNull()
                                  else Qt.ToolButtonStyle.ToolButtonIconOnly)
        self.buttons[action.objectName()] = button
        return button

    def block(self, line: str | None) -> None:
        """Show why Distil is off (``line``, one sentence) instead of the status line and the idle progress
        bar (the sentence takes the bar's width too: at 1,024 pixels the bar left it 40 characters of
        about 190); ``None`` clears it."""
        self.blocked.setText(line or "")            # elided in a narrow bar, the whole sentence its tool tip
        self.blocked.setVisible(line is not None)
        self.info.setVisible(line is None)
        self.bar.setVisible(line is None)

    def idle(self, text: str, step: int | None = None, total: int | None = None) -> None:
        """Nothing runs: ``text`` on the status line, the bar empty or, where a run ended, at ``step`` of ``total``."""
        if step is None or total is None:
            self.bar.setRange(0, 1)
            self.bar.setValue(0)
            self.bar.setFormat("")
        else:
            self.bar.setRange(0, total)
            self.bar.setValue(step)
            self.bar.setFormat(f"{step:,} / {total:,}")
        self.info.setText(text)

    def busy(self, text: str) -> None:
        """An indeterminate phase (data preparation, loading the data of a transfer)."""
        self.bar.setRange(0, 0)
        self.info.setText(text)

    def start_run(self) -> None:
        """A distillation starts: the step rate is measured afresh."""
        self.meter.clear()
        self.busy("Starting…")

    def count_step(self, step: int, elapsed: float) -> None:
        """A step ended ``elapsed`` seconds into the run (for the rate and the ETA)."""
        self.meter.add(step, elapsed)

    def explain(self, text: str) -> None:
        """Details behind the status line, shown as its tooltip (e.g. how the teacher was solved)."""
        self.info.setToolTip(text)

    def teacher(self, iteration: int, max_iter: int, rel_gap: float, unit: str = "iteration") -> None:
        """The teacher solve's progress: ``iteration`` of at most ``max_iter`` ``unit``s (it usually stops
        early, at its tolerance)."""
        self.bar.setRange(0, max_iter)
        self.bar.setValue(min(iteration, max_iter))
        self.bar.setFormat(f"teacher {min(iteration, max_iter):,}")
        self.info.setText(f"Solving the teacher: {unit} {iteration:,} of at most {max_iter:,}, relative gap "
                          f"{rel_gap:.2e}")

    def step(self, step: int, total: int, suffix: str = "") -> None:
        rate = self.meter.rate()
        self.bar.setRange(0, total)
        self.bar.setValue(step)
        self.bar.setFormat(f"{step:,} / {total:,}")        # grouped like the status line (Qt's %v is not)
        text = f"Step {step:,} of {total:,}"
        if rate:
            text += f" · {rate:.1f} steps/s · ETA {format_duration((total - step) / rate)}"
        self.info.setText(text + suffix)

    def progress(self, done: int, total: int, text: str) -> None:
        """A measured phase other than the distillation steps (the epochs of a transfer)."""
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(min(done, total))
        self.bar.setFormat("%p%")
        self.info.setText(text)

    def steps_per_second(self) -> float | None:
        return self.meter.rate()
