"""Live plots of a run: teacher convergence, duality gap (two parts), radius bound, test accuracy
against the teacher (all data) and a random real subset of the same size, and certified consistency.

Events only append to growable buffers; :meth:`LivePlots.refresh` (called on the GUI's repaint
timer) pushes changed buffers into persistent curve items with ``setData``. Plots are never rebuilt.

Repaint cost matters: PySide holds the GIL while Qt paints, so every millisecond spent drawing is
taken from the engine thread. Axes are the expensive part, so during a run the ranges stay still:
x spans the whole run from the start, log-y axes move in whole decades, accuracies stay on [0, 1].
Legends move only to a spot that covers fewer points (:mod:`dgkip_gui.widgets.plot_legends`); the hover
read-out only draws while the pointer is over a plot.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QFontMetricsF, QPaintEvent
from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget

from engine.events import Evaluation, Step, TeacherProgress
from dgkip_gui.widgets.plot_hover import HoverReadout
from dgkip_gui.widgets.plot_legends import FRACTIONS_FIRST, LINES_FIRST, LegendPlacer


class Series:
    """A growable ``(x, y)`` float64 buffer (amortised O(1) append, zero-copy views)."""

    def __init__(self) -> None:
        self._x = np.empty(256)
        self._y = np.empty(256)
        self.n = 0

    def append(self, x: float, y: float) -> None:
        if self.n == len(self._x):
            self._x = np.resize(self._x, 2 * self.n)
            self._y = np.resize(self._y, 2 * self.n)
        self._x[self.n], self._y[self.n] = x, y
        self.n += 1

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self.n]

    def clear(self) -> None:
        self.n = 0


SHOWN_DECADES = range(-30, 31)     # every decade a gap, a radius or a relative gap reaches in practice
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def decade_label(exponent: float) -> str:
    """The tick label of ``10**exponent``: plain from 0.01 to 100, else 10 with a superscript
    exponent ("10⁻³", narrower than pyqtgraph's "0.001"); a non-integer exponent as one digit."""
    n = round(exponent)
    if abs(exponent - n) > 1e-6:
        return f"{10.0 ** exponent:.1g}"
    return f"{10.0 ** n:g}" if -2 <= n <= 2 else "10" + str(n).translate(SUPERSCRIPT)


class DecadeAxis(pg.AxisItem):
    """A log axis that labels decades only, also when it spans just one or two of them (pyqtgraph
    would then label every minor tick: 0.02, 0.03, … crowd into each other).

    Its text width is fixed at the widest label of :data:`SHOWN_DECADES`. pyqtgraph sizes an axis to
    the labels it shows, so a curve crossing into a new decade mid-run widened or narrowed the axis,
    the whole plot grid was laid out again and all ten axes re-rendered their ticks: on a 2-core
    machine with the engine running, that paint took 40–65 ms of the GUI thread instead of 8–14 ms."""

    def __init__(self, orientation: str = "left") -> None:
        super().__init__(orientation)
        metrics = QFontMetricsF(self.style["tickFont"] or QApplication.font())
        widest = max(metrics.horizontalAdvance(decade_label(v)) for v in SHOWN_DECADES)
        self.setStyle(autoExpandTextSpace=False, tickTextWidth=math.ceil(widest) + 2)
        # the ticks show true values (10⁻⁴, 0.01): pyqtgraph's unit prefix would add a wrong "(x0.001)"
        # to the axis title for ranges under 10⁻³
        self.enableAutoSIPrefix(False)

    def logTickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        return [decade_label(v) for v in values]

    def logTickValues(self, minVal: float, maxVal: float, size: float, stdTicks: list) -> list:
        low, high = int(np.floor(minVal)), int(np.ceil(maxVal))
        if high - low > 4:
            return super().logTickValues(minVal, maxVal, size, stdTicks)
        decades = [float(v) for v in range(low, high + 1) if minVal <= v <= maxVal]
        minor = [v + np.log10(k) for v in range(low, high) for k in range(2, 10) if minVal < v + np.log10(k) < maxVal]
        return [(1.0, decades), (None, minor)]


TICK_GAP_PX = 10     # blank pixels at least between two x tick labels


def next_nice(spacing: float) -> float:
    """The next tick spacing up in the 1, 2, 5 × 10ᵏ series (0.2 → 0.5 → 1 → 2)."""
    exponent = math.floor(math.log10(spacing) + 1e-9)
    mantissa = spacing / 10**exponent
    return next(step for step in (2, 5, 10) if mantissa < step - 1e-9) * 10**exponent


class SpacedAxis(pg.AxisItem):
    """An x axis whose labelled ticks leave room for their labels. pyqtgraph puts at least 2.25
    intervals on any axis, so on a narrow plot the labels ran together ("0.20.40.60.8"); here the
    major spacing grows (1, 2, 5 × 10ᵏ) until the widest label plus ``TICK_GAP_PX`` fits between ticks,
    and only major ticks are labelled."""

    def __init__(self, orientation: str = "bottom") -> None:
        super().__init__(orientation)
        self.setStyle(maxTextLevel=0)
        # Iterations and steps are counts: no "(×0.001)" suffix while the teacher's first point spans a
        # tiny auto range (the longer label's pixels stayed on screen once it shrank back).
        self.enableAutoSIPrefix(False)

    def tickSpacing(self, minVal: float, maxVal: float, size: float) -> list:
        levels = super().tickSpacing(minVal, maxVal, size)
        span = abs(maxVal - minVal)
        if not levels or span == 0 or size <= 0 or self._tickSpacing is not None:
            return levels
        major = levels[0][0]
        while size * major / span < self.label_room(minVal, maxVal, major):
            major = next_nice(major)
        return [(major, 0.0)] + [level for level in levels[1:] if level[0] < major]

    def label_room(self, low: float, high: float, spacing: float) -> float:
        """Pixels the labels of ticks ``spacing`` apart on ``[low, high]`` need between two ticks."""
        low, high = min(low, high), max(low, high)
        values = np.arange(math.ceil(low / spacing), math.floor(high / spacing) + 1) * spacing
        if not values.size:
            return 0.0
        metrics = QFontMetricsF(self.style["tickFont"] or QApplication.font())
        labels = self.tickStrings(list(values), self.scale * self.autoSIPrefixScale, spacing)
        return max(metrics.horizontalAdvance(label) for label in labels) + TICK_GAP_PX


@dataclass
class _Curve:
    item: pg.PlotDataItem
    plot: pg.PlotItem
    data: Series
    name: str
    dirty: bool = False


GAP, FY, KM, RADIUS = "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"
TEACHER, RANDOM, CONSISTENCY, MEASURED = "#d62728", "#7f7f7f", "#17becf", "#e377c2"
AXIS_LABEL_STYLE = {"font-size": "8pt"}   # as the legends: the y labels (113–118 px) fit a 1024 × 700 window's 132-px axes
LEGEND_MARGIN_PX = 8  # a plot's data area is at least its legend's width plus this
PLOT_MIN_HEIGHT_PX = 90  # and this high: below it tick labels piled up and legends hid the curves
LABEL_HYSTERESIS_PX = 12  # a hidden y label comes back only with this much of its axis to spare
ON_TOP = 10         # z value of a total drawn over its parts (the gap over Fenchel–Young and kernel match)


def _pen(color: str, dashed: bool = False) -> pg.QtGui.QPen:
    pen = pg.mkPen(color, width=2)
    if dashed:
        pen.setStyle(Qt.PenStyle.DashLine)
    return pen


class PlotView(pg.GraphicsLayoutWidget):
    """A ``GraphicsLayoutWidget`` whose minimum size is that of its plots (titles, axes, tick labels).

    pyqtgraph's view does not tell Qt's layouts what its scene needs, so a narrow window laid the plots
    out wider than the view and cut off the right-hand column. :meth:`sync_minimum` re-reads the scene's
    minimum after each paint (axes size their tick labels while painting) and updates the widget's when
    it changed."""

    def __init__(self) -> None:
        super().__init__()
        self._minimum = QSize(0, 0)

    def scene_minimum(self) -> QSize:
        """The smallest widget size that shows every plot whole, frame included."""
        size = self.ci.effectiveSizeHint(Qt.SizeHint.MinimumSize)
        frame = 2 * self.frameWidth()
        return QSize(math.ceil(size.width()) + frame, math.ceil(size.height()) + frame)

    def minimumSizeHint(self) -> QSize:
        return self._minimum

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        self.sync_minimum()      # axes size their tick labels while painting
        self.sync_labels()

    def sync_labels(self) -> None:
        """Show each plot's vertical axis label only where it fits along its axis: in a short window a
        longer one ran into the title and the next row's label (the plot's title, its legend and the
        hover read-out still name what it shows)."""
        changed = False
        for item in self.ci.items:
            if not isinstance(item, pg.PlotItem):
                continue
            axis = item.getAxis("left")
            needed, shown = axis.label.boundingRect().width(), axis.label.isVisible()
            # hidden where it does not fit; shown again only with LABEL_HYSTERESIS_PX to spare: a label
            # widens the plots' minimum, which in a scrolling window can bring a horizontal scroll bar,
            # whose height shortened the axes by 7 px, hid the label, dropped the bar, and so on
            fits = needed <= axis.height() - (0 if shown else LABEL_HYSTERESIS_PX)
            if axis.labelText and fits != shown:
                axis.showLabel(fits)
                changed = True
        if changed:      # the axes' widths changed: once their layout has taken the new minimum, fit the
            # plots to the view again (a narrower minimum does not resize the view, which would do it)
            QTimer.singleShot(0, self, lambda: self.ci.setGeometry(self.range))

    def sync_minimum(self) -> None:
        """Make the widget's minimum the scene's (a cached layout query; a layout request on change)."""
        minimum = self.scene_minimum()
        if minimum != self._minimum:
            self._minimum = minimum
            self.updateGeometry()


class LivePlots(QWidget):
    """Five persistent plots in one ``GraphicsLayoutWidget``; CSV column names are the curve keys.

    Each plot has axis labels with units, a legend, a hover read-out (:mod:`dgkip_gui.widgets.plot_hover`) and
    pyqtgraph's own right-click menu (view options and Export… to PNG, SVG or CSV)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = PlotView()
        self.view.setBackground("w")
        self.view.ci.setSpacing(4)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self._curves: dict[str, _Curve] = {}
        self._decades: dict[pg.PlotItem, tuple[int, int] | None] = {}   # log-y plots → shown decade span
        self.hover = HoverReadout(self.view.scene())

        teacher = self._plot(0, 0, "Teacher solve", "iteration", "relative duality gap", log_y=True, legend=False)
        gap = self._plot(0, 1, "Duality gap G at the teacher", "step", "G (mean loss units)", log_y=True)
        radius = self._plot(0, 2, "Distance to the teacher", "step", "‖w_S − w*‖ (RKHS)", log_y=True)
        accuracy = self._plot(1, 0, "Test accuracy of kernel models", "step", "accuracy (fraction)", colspan=2)
        consistency = self._plot(1, 2, "Agreement with the teacher", "step", "fraction of test set")
        for plot in (accuracy, consistency):
            plot.getViewBox().setLimits(yMin=-0.05, yMax=1.05)
        self._step_plots = (gap, radius, accuracy, consistency)
        self._teacher_plot = teacher
        self._unit_plots = (accuracy, consistency)

        self._add(teacher, "teacher_rel_gap", "relative gap", "#8c564b")
        self._add(gap, "fenchel_young", "Fenchel–Young part", FY)
        self._add(gap, "kernel_match", "kernel-matching part", KM)
        self._add(gap, "gap", "gap G (total)", GAP).item.setZValue(ON_TOP)
        self._add(radius, "radius", "radius bound √(2G/λ)", RADIUS)
        self._add(radius, "certified_radius", "certified radius", None, symbol="o", color=RADIUS)
        self._add(radius, "distance", "measured distance", None, symbol="t", color=MEASURED)
        self._add(accuracy, "distilled_accuracy", "model trained on S", GAP, symbol="o")
        self._add(accuracy, "teacher_accuracy", "teacher (all data)", TEACHER, dashed=True)
        self._add(accuracy, "random_accuracy", "random real subset", RANDOM, dashed=True)
        self._add(consistency, "certified_consistency", "certified consistency", CONSISTENCY, symbol="o")
        self._add(consistency, "agreement", "measured agreement", MEASURED, symbol="t", dashed=True)
        for plot, xlabel in ((teacher, "iteration"),) + tuple((p, "step") for p in self._step_plots):
            curves = [(c.name, self._xy(c)) for c in self._curves.values() if c.plot is plot]
            self.hover.add(plot, xlabel, curves)
        self.legends = LegendPlacer()            # each legend in the spot over the fewest points
        for plot in (gap, radius, accuracy, consistency):     # a legend is never wider than its plot
            plot.getViewBox().setMinimumWidth(math.ceil(plot.legend.boundingRect().width()) + LEGEND_MARGIN_PX)
            self.legends.add(plot, FRACTIONS_FIRST if plot in self._unit_plots else LINES_FIRST)
        for plot in (teacher,) + self._step_plots:            # a short window scrolls instead (main_window)
            plot.getViewBox().setMinimumHeight(PLOT_MIN_HEIGHT_PX)
        self.reset()
        self.view.sync_minimum()

    # -- construction ------------------------------------------------------------
    def _plot(self, row: int, col: int, title: str, xlabel: str, ylabel: str, *, log_y: bool = False,
              colspan: int = 1, legend: bool = True) -> pg.PlotItem:
        """A plot at (row, col) of the layout; ``legend``: False for a one-curve plot its labels name."""
        axes = {"bottom": SpacedAxis()} | ({"left": DecadeAxis("left")} if log_y else {})
        plot = self.view.addPlot(row=row, col=col, colspan=colspan, axisItems=axes)
        plot.setTitle(title, size="9pt", color="#222")
        plot.setLabel("bottom", xlabel, **AXIS_LABEL_STYLE)
        plot.setLabel("left", ylabel, **AXIS_LABEL_STYLE)
        plot.setLogMode(y=log_y)
        if log_y:
            self._decades[plot] = None
        plot.setClipToView(True)
        plot.setDownsampling(auto=True, mode="peak")
        if legend:
            plot.addLegend(offset=(-4, 4), labelTextSize="8pt", labelTextColor="#222", verSpacing=-6,
                           brush=pg.mkBrush(255, 255, 255, 200), pen=pg.mkPen("#ccc"))
        if log_y:   # label decades only (the range always spans whole decades); minor ticks stay unlabelled
            plot.getAxis("left").setStyle(maxTextLevel=0)
        return plot

    def _add(self, plot: pg.PlotItem, key: str, name: str, pen_color: str | None, *, symbol: str | None = None,
             color: str | None = None, dashed: bool = False) -> _Curve:
        color = color or pen_color
        item = plot.plot(pen=_pen(pen_color, dashed) if pen_color else None, name=name,
                         symbol=symbol, symbolSize=6, symbolBrush=color, symbolPen=color)
        curve = self._curves[key] = _Curve(item, plot, Series(), name)
        return curve

    @staticmethod
    def _xy(curve: _Curve):
        return lambda: (curve.data.x, curve.data.y)

    # -- data --------------------------------------------------------------------
    def _append(self, key: str, x: float, y: float) -> None:
        curve = self._curves[key]
        curve.data.append(x, y)
        curve.dirty = True

    def add_teacher(self, event: TeacherProgress) -> None:
        if self._curves["teacher_rel_gap"].data.n == 0:     # the x axis counts the solver's own unit
            self._teacher_plot.setLabel("bottom", f"{event.unit}s" if event.unit != "iteration" else "iteration",
                                        **AXIS_LABEL_STYLE)
        self._append("teacher_rel_gap", event.iteration, event.rel_gap)

    def add_step(self, event: Step) -> None:
        for key in ("gap", "fenchel_young", "kernel_match", "radius"):
            self._append(key, event.step, getattr(event, key))

    def add_evaluation(self, event: Evaluation) -> None:
        self._append("certified_radius", event.step, event.radius)
        for key in ("distilled_accuracy", "teacher_accuracy", "random_accuracy", "certified_consistency",
                    "agreement", "distance"):
            self._append(key, event.step, getattr(event, key))

    def refresh(self) -> None:
        """Push changed buffers into their curve items (cheap when nothing changed)."""
        changed = set()
        for curve in self._curves.values():
            if curve.dirty:
                curve.item.setData(curve.data.x, curve.data.y)
                curve.dirty = False
                changed.add(curve.plot)
        for plot in changed & self._decades.keys():
            self._fit_decades(plot)
        for plot in changed - {self._teacher_plot}:
            self.legends.place(plot)

    def _fit_decades(self, plot: pg.PlotItem) -> None:
        """Show whole decades around the plot's finite positive values; move only when they change."""
        values = [c.data.y for c in self._curves.values() if c.plot is plot and c.data.n]
        y = np.concatenate(values) if values else np.empty(0)
        y = y[np.isfinite(y) & (y > 0)]
        if not y.size:
            return
        low, high = int(np.floor(np.log10(y.min()))), int(np.ceil(np.log10(y.max())))
        span = (low, max(high, low + 1))
        if span != self._decades[plot]:     # None after a reset: always set
            self._decades[plot] = span
            plot.setYRange(*span, padding=0.02)

    def reset(self, total_steps: int = 0) -> None:
        """Clear the curves and put every view back where a run starts, whatever happened to it (a zoom
        or pan by the user, a cancelled run): step axes ``[0, total_steps]`` (auto when 0), the
        teacher's iterations auto-ranged, log axes at 10⁻³…1 until data arrives, fractions on [0, 1].

        (Enabling auto-range alone does not undo a zoom: with clip-to-view the view keeps the zoomed
        range, so each range is set explicitly first.)"""
        self.hover.hide()                       # a read-out of the cleared curves would stay up
        for curve in self._curves.values():
            curve.data.clear()
            curve.item.setData([], [])
            curve.dirty = False
        for plot in (self._teacher_plot, *self._step_plots):
            plot.setXRange(0, total_steps if total_steps and plot is not self._teacher_plot else 1, padding=0.02)
            if not total_steps or plot is self._teacher_plot:
                plot.enableAutoRange(x=True)
        for plot in self._decades:
            self._decades[plot] = None
            plot.setYRange(-3, 0, padding=0.02)
        for plot in self._unit_plots:
            plot.setYRange(0, 1.02, padding=0)
        self.legends.reset()

    def finish(self) -> None:
        """After a run: fit the step axes to the steps actually taken (a stopped run ends early), then
        place the legends for that range (auto-range applies at the next paint: a legend placed before
        it was placed for the whole run's axis, where a stopped run's points filled a thin left strip)."""
        for plot in self._step_plots:
            plot.enableAutoRange(x=True)
            plot.getViewBox().updateAutoRange()
            self.legends.place(plot)

    def point_count(self, key: str) -> int:
        """Points stored for a curve (e.g. ``"gap"``), whether or not drawn yet."""
        return self._curves[key].data.n

    # -- export ------------------------------------------------------------------
    def export_png(self, path: str | Path) -> Path:
        """Save the plots as they appear (at the widget's size) to a PNG file."""
        path = Path(path)
        if not self.view.grab().save(str(path), "PNG"):
            raise OSError(f"could not write {path}")
        return path

    def export_csv(self, path: str | Path) -> Path:
        """Write one row per step (and per teacher iteration) with every curve's value."""
        rows: dict[tuple[str, int], dict[str, float | str]] = {}
        for key, curve in self._curves.items():
            phase = "teacher" if key.startswith("teacher_rel") else "distill"
            for x, y in zip(curve.data.x, curve.data.y):
                row = rows.setdefault((phase, int(x)), {"phase": phase, "step": int(x)})
                row[key] = float(y)
        path = Path(path)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["phase", "step", *self._curves])
            writer.writeheader()
            writer.writerows(sorted(rows.values(), key=lambda r: (r["phase"] != "teacher", r["step"])))
        return path
