"""The "Run" results tab: a run's final metrics in words (human labels, units, a tooltip each) and a
note that explains the certificate — what it proves, what was measured, and, when the radius is too
large to certify anything, what would change that, with numbers.

Rows come from ``Done.metrics`` (:func:`engine.distill.run`); keys this table does not know (a newer
engine) are shown with their key as label, never dropped.
"""
from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QSizePolicy, QTableWidget, QTableWidgetItem,
                               QTextBrowser, QVBoxLayout, QWidget)

from engine.config import DistillConfig
from engine.kernels import make_kernel

# key → (label, unit kind, tooltip); kinds: "%" fraction shown as percent, "n" number, "i" count, "s" seconds,
# "t" text. Rows appear in this order; "agreement_with_teacher" and "distance_to_teacher" are shown beside
# certified consistency and the radius (see COMPANIONS) rather than on rows of their own.
METRICS: dict[str, tuple[str, str, str]] = {
    "teacher_test_accuracy": ("Teacher test accuracy", "%", "Kernel model trained on all training images (the reference; a distilled set can score above it on the test images)."),
    "distilled_test_accuracy": ("Distilled-set test accuracy", "%",
                                "Same kernel model trained on the distilled images only."),
    "kip_test_accuracy": ("KIP model test accuracy", "%",
                          "KIP mode: kernel ridge regression on the distilled images with KIP's own ridge (trace: "
                          "λ·tr(K_SS)/m, as published; fixed: λ·m, then equal to the row above)."),
    "kip_ridge": ("KIP ridge", "t", "KIP mode: the ridge convention the run used (trace or fixed)."),
    "random_subset_test_accuracy": ("Random-subset test accuracy", "%",
                                    "Same model trained on a random class-balanced real subset of the same size "
                                    "(the floor)."),
    "certified_consistency": ("Certified consistency", "%",
                              "Test points whose teacher prediction provably cannot change for the model trained "
                              "on S (margin > √2·r·√k(x,x); a binary loss on two classes, one score: |z| > r·√k(x,x)). "
                              "Beside it: the measured agreement."),
    "radius": ("Radius bound r = √(2G/λ)", "n",
               "Certified upper bound on ‖w_S − w*‖ in the RKHS. Beside it: the measured distance."),
    "radius_for_half_certified": ("Radius that would certify half", "n",
                                  "Half the test predictions are certified once r falls below this."),
    "radius_to_exact_teacher": ("Radius to the exact teacher", "n",
                                "r plus the teacher's own certified distance to the exact full-data model "
                                "(a Nyström teacher: only with the exact certificate, else —)."),
    "exact_teacher_gap": ("Full problem's gap at the teacher", "n",
                          "Duality gap of the full n-point problem at the teacher (its distance to the exact "
                          "teacher is at most √(2G/λ)); — when not certified."),
    "gap": ("Duality gap G", "n", "Certified duality gap at the teacher (float64, feasible duals)."),
    "fenchel_young": ("  Fenchel–Young part", "n", "Loss part of G: how well S's duals fit the teacher's scores."),
    "kernel_match": ("  Kernel-matching part", "n", "λ/2·‖w* − w(α_S)‖² (+ a rounding allowance)."),
    "error_lower": ("Test error, certified lower bound", "%", "Certified lower bound on the error of S's model."),
    "error_upper": ("Test error, certified upper bound", "%", "Certified upper bound on the error of S's model."),
    "teacher_kind": ("Teacher", "t", "exact (all n images) or nystrom (the exact minimiser over the span of M "
                                     "centres)."),
    "teacher_reason": ("Why this teacher", "t", "The plan's reason (the memory budget decides under Auto)."),
    "centres": ("Nyström centres M", "i", "Training images spanning the Nyström teacher (— for an exact teacher)."),
    "centre_selection": ("Centre selection", "t", "How the Nyström centres were chosen."),
    "nystrom_jitter": ("Cholesky jitter", "n", "ε added to K(Z, Z)'s diagonal to factorise it (Nyström)."),
    "teacher_gap": ("Teacher duality gap", "n", "Certified gap of the full-data solve (Nyström: of the problem "
                                               "restricted to the centres' span)."),
    "teacher_rel_gap": ("Teacher relative gap", "n", "Teacher gap divided by its primal objective."),
    "teacher_primal": ("Teacher objective", "n", "Primal objective of the teacher (mean loss + λ/2‖w‖²)."),
    "teacher_iterations": ("Teacher iterations", "i", "Outer iterations of the teacher solve."),
    "teacher_solver": ("Teacher solver", "t", "Algorithm that solved the teacher."),
    "teacher_seconds": ("Teacher time", "s", "Wall time of the teacher solve."),
    "n_train": ("Training images", "i", "Real training images the teacher saw."),
    "n_support": ("Support points", "i", "Training images with a non-zero dual variable."),
    "n_test": ("Test images", "i", "Test points used for accuracies and certificates."),
    "steps": ("Steps", "i", "Distillation steps taken."),
    "seconds": ("Total time", "s", "Wall time of the whole run."),
    "steps_per_second": ("Speed", "n", "Distillation steps per second."),
    "step_threads": ("Step threads", "i", "CPU threads the steps ran on at the end of the run (setting CPU "
                                          "threads; under auto, small steps time one thread against all and "
                                          "keep all where they are at least 5 % faster; in brackets the last trial's median step time "
                                          "for each count)."),
    "columns": ("Label columns", "i", "Columns of the label matrix: 1 for a binary loss on two classes (one ±1 "
                                      "score; the gap and radius are the one column's), else the classes."),
    "processes": ("Processes", "i", "Processes that shared the teacher (torchrun); 1 for a run in the app."),
}
COMPANIONS = {"certified_consistency": ("agreement_with_teacher", "measured agreement", "%"),
              "radius": ("distance_to_teacher", "measured distance", "n"),
              "step_threads": ("thread_trials", "timed", "trials")}


def format_value(value: Any, kind: str) -> str:
    """``0.931, "%"`` → ``"93.10 %"``; ``12.5, "s"`` → ``"12.5 s"``; numbers to 4 significant figures."""
    if value is None:
        return "—"                  # not computed (e.g. the distance to the exact teacher without its certificate)
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if kind == "trials":        # engine.device.StepThreads.trials: the latest trial's two medians
        if not value:
            return ""
        last = value[-1]
        return f"1: {1e3 * last['one_thread_s']:.2f} ms, {last['threads']}: {1e3 * last['threads_s']:.2f} ms"
    if isinstance(value, float) and math.isnan(value):
        return "—"
    if kind == "%":
        return f"{100 * value:.2f} %"
    if kind == "s":
        return f"{value:,.1f} s"
    if kind == "i" or isinstance(value, int):
        return f"{int(value):,}"
    return f"{value:.4g}"


def rows(metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, value, tooltip) per metric: known keys in :data:`METRICS` order, then unknown ones."""
    companions = {key for key, _, _ in COMPANIONS.values()}
    out = []
    for key, (label, kind, tip) in METRICS.items():
        if key not in metrics:
            continue
        text = format_value(metrics[key], kind)
        if key in COMPANIONS and COMPANIONS[key][0] in metrics:
            other, name, other_kind = COMPANIONS[key]
            extra = format_value(metrics[other], other_kind)
            if extra:                                     # "" for nothing to add (no thread trial)
                text += f"  ({name} {extra})"
        out.append((label, text, tip))
    for key, value in metrics.items():
        if key not in METRICS and key not in companions and not isinstance(value, (dict, list, tuple)):
            out.append((key.replace("_", " ").capitalize(), format_value(value, "n"), key))
    return out


def certificate_note(metrics: dict[str, Any], config: DistillConfig | None) -> str:
    """What the certificate says in words; with nothing certified, why and what would change it."""
    needed = ("certified_consistency", "radius", "gap", "kernel_match", "agreement_with_teacher",
              "distance_to_teacher", "radius_for_half_certified")
    if config is None or any(key not in metrics for key in needed):
        return ""
    share, r = metrics["certified_consistency"], metrics["radius"]
    agree, dist, half = metrics["agreement_with_teacher"], metrics["distance_to_teacher"], metrics[
        "radius_for_half_certified"]
    lam, gap = config.lam, metrics["gap"]
    looseness = f"the bound is {r / dist:.1f}× the measured distance {dist:.3g}" if dist > 0 else \
        "the measured distance is 0"
    measured = f"The model trained on S agrees with the teacher on {100 * agree:.1f} % of test points; {looseness}."
    if share > 0:
        return (f"Certified: {100 * share:.1f} % of test predictions provably match the teacher's (radius "
                f"r = {r:.3g}). {measured}")
    km_share = metrics["kernel_match"] / gap if gap > 0 else 0.0
    factor = (r / half) ** 2 if half > 0 else math.inf
    levers = [f"more images per class (now {config.ipc}; the kernel-matching part is {100 * km_share:.0f} % of "
              "the gap, and it shrinks as S grows)"]
    if not make_kernel(config.kernel, **config.kernel_params).explicit:
        levers.append("an explicit-feature kernel (rf-fc, rf-conv), whose teacher S can match more closely")
    levers.append(f"a larger λ (now {lam:g}; r = √(2G/λ), so 10× λ divides r by 3.2 at the same gap, but the "
                  "teacher changes with λ)")
    return (f"Nothing certified: the radius r = {r:.3g} is too large. Half the test predictions would be "
            f"certified below r = {half:.3g}, a gap {factor:,.0f}× smaller (G ≤ {lam * half ** 2 / 2:.2g} at "
            f"λ = {lam:g}; now {gap:.3g}). {measured} What lowers the radius: " + "; ".join(levers) + ".")


class NoteView(QTextBrowser):
    """The certificate note: wrapped text as tall as its lines need, and scrolling where the results
    area is too short for all of them (a wrapped QLabel was silently cut off at 1024 × 700)."""

    LINES_AT_LEAST = 3

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setOpenLinks(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.setStyleSheet("QTextBrowser { background: #f4f8fd; border: 1px solid #c9d8ee; border-radius: 4px; }")
        self.document().setDocumentMargin(4)
        self.document().contentsChanged.connect(self.updateGeometry)

    def text(self) -> str:
        return self.toPlainText()

    def setText(self, text: str) -> None:  # noqa: N802 - QLabel's name, which callers use
        self.setPlainText(text)

    def _frame(self) -> int:
        return 2 * self.frameWidth()

    def sizeHint(self) -> QSize:
        """As tall as the wrapped text at the current width."""
        document = self.document().clone()
        document.setTextWidth(max(1, self.viewport().width()))
        return QSize(super().sizeHint().width(), math.ceil(document.size().height()) + self._frame())

    def minimumSizeHint(self) -> QSize:
        lines = self.fontMetrics().lineSpacing() * self.LINES_AT_LEAST
        return QSize(super().minimumSizeHint().width(), lines + 2 * 4 + self._frame())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self.updateGeometry()      # the text rewraps: a new height


class RunResults(QWidget):
    """The certificate note above a two-column table (metric, value), one row per metric."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.note = NoteView()
        self.note.hide()
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Metric", "Value"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setTabKeyNavigation(False)     # Tab leaves the table; the arrow keys move between cells
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addWidget(self.note)
        layout.addWidget(self.table, 1)

    def resizeEvent(self, event: QResizeEvent) -> None:
        """The note takes at most half the height; beyond that it scrolls (the table stays in view)."""
        super().resizeEvent(event)
        self.note.setMaximumHeight(max(self.note.minimumSizeHint().height(), event.size().height() // 2))

    def clear(self) -> None:
        self.table.setRowCount(0)
        self.note.clear()
        self.note.hide()

    def show_metrics(self, metrics: dict[str, Any], config: DistillConfig | None = None) -> None:
        shown = rows(metrics)
        self.table.setRowCount(len(shown))
        for row, (label, text, tip) in enumerate(shown):
            name = QTableWidgetItem(label)
            name.setToolTip(tip)
            value = QTableWidgetItem(text)
            value.setToolTip(tip)
            value.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(row, 0, name)
            self.table.setItem(row, 1, value)
        note = certificate_note(metrics, config)
        self.note.setText(note)
        self.note.setVisible(bool(note))

    def labels(self) -> list[str]:
        """The metric labels shown, top to bottom."""
        return [self.table.item(r, 0).text() for r in range(self.table.rowCount())]
