"""The dataset panel's problems box: a one-line count of the skipped files naming the first few, and
the list of every problem (file, what is wrong, what to do) with the platform's standard icons.

Icons come from ``QStyle.StandardPixmap`` rather than emoji, which fresh desktops without an emoji
font draw as empty boxes.
"""
from __future__ import annotations

import html
from pathlib import PurePath

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListView, QListWidget, QListWidgetItem, QStyle, QVBoxLayout, QWidget

from engine.data.report import Problem

NAMED = 3            # skipped files named in the summary line
NAME_CHARS = 40      # longer names are shortened in the middle there (the tooltip has them whole)
ICON_PX = 16
LIST_HEIGHT = 120    # pixels; the list scrolls beyond
ICONS = {"error": QStyle.StandardPixmap.SP_MessageBoxCritical, "warning": QStyle.StandardPixmap.SP_MessageBoxWarning}


def short_path(path: str, source: str) -> str:
    """``path`` relative to the dataset's ``source`` folder (``circle/bad.png``), else its name."""
    try:
        relative = PurePath(path).relative_to(source)
    except ValueError:
        return PurePath(path).name or path
    return str(relative) if relative.parts else (PurePath(path).name or path)


def middle_elided(text: str, limit: int = NAME_CHARS) -> str:
    """``text`` cut to ``limit`` characters by an ellipsis in the middle (the file's extension stays)."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head):]}"


def skipped_summary(problems: list[Problem], source: str, named: int = NAMED) -> str:
    """"2 files skipped: a/x.png, b/y.png" (first ``named`` names, then "and N more"); "" when none."""
    skipped = [middle_elided(short_path(p.path, source)) for p in problems if p.severity == "error"]
    if not skipped:
        return ""
    shown = ", ".join(skipped[:named])
    more = f" and {len(skipped) - named} more" if len(skipped) > named else ""
    return f"{len(skipped)} file{'s' if len(skipped) != 1 else ''} skipped: {shown}{more}"


def problem_text(problem: Problem, source: str) -> str:
    """One list line: the file, what is wrong and what to do."""
    fix = f" — {problem.fix}" if problem.fix else ""
    return f"{short_path(problem.path, source)}: {problem.message}{fix}"


class ProblemsView(QWidget):
    """Shows a dataset report's problems; hidden when there are none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.icon = QLabel()
        self.icon.setPixmap(self.style().standardIcon(ICONS["error"]).pixmap(ICON_PX, ICON_PX))
        self.icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        head = QHBoxLayout()
        head.setContentsMargins(0, 0, 0, 0)
        head.addWidget(self.icon)
        head.addWidget(self.summary, 1)
        self.head = QWidget()
        self.head.setLayout(head)
        self.summary_text = ""     # the summary line as plain text ("" when no file was skipped)
        self.list = QListWidget()
        self.list.setWordWrap(True)                   # long lines wrap to the panel's width
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setIconSize(QSize(ICON_PX, ICON_PX))
        self.list.setMaximumHeight(LIST_HEIGHT)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.head)
        layout.addWidget(self.list)

    def show_problems(self, problems: list[Problem], source: str) -> None:
        """List ``problems`` (paths shown relative to ``source``) and name the skipped files above them."""
        self.list.clear()
        for problem in sorted(problems, key=lambda p: p.severity != "error"):    # skipped files first
            icon = self.style().standardIcon(ICONS.get(problem.severity, ICONS["warning"]))
            item = QListWidgetItem(icon, problem_text(problem, source))
            item.setToolTip(str(problem))
            self.list.addItem(item)
        summary = skipped_summary(problems, source)
        self.summary_text = summary
        self.summary.setText(f"<b>{html.escape(summary)}</b>" if summary else "")
        self.summary.setToolTip("\n".join(p.path for p in problems if p.severity == "error"))
        self.head.setVisible(bool(summary))
        self.setVisible(bool(problems))

