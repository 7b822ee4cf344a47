"""A distillation run on a worker thread: the estimate's refusal checked first, then the engine's
events drawn as live curves, the synthetic images and the results table; the result kept for export."""
from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal

from engine import ResourceError, distill, export
from engine.config import ConfigError, DistillConfig
from engine.control import RunControl
from engine.data import Dataset
from engine.events import (Done, Evaluation, Progress, Snapshot, Stage, Step, TeacherDone, TeacherProgress,
                           stop_effect)
from engine.result import DistillResult
from dgkip_gui import open_dialog
from dgkip_gui.errors import ErrorReport, is_expected
from dgkip_gui.export_target import EMPTY, EXPORT, NEW, OTHER, classify, free_subfolder, write_error_message
from dgkip_gui.sessions.base import JobHost, Session, Shell
from dgkip_gui.widgets.settings_panel import SettingsPanel
from dgkip_gui.settings_store import EXPORTS, SettingsStore
from dgkip_gui.widgets.image_grid import ImageGrid
from dgkip_gui.widgets.plots import LivePlots
from dgkip_gui.widgets.results_view import RunResults
from dgkip_gui.widgets.run_panel import RunPanel, format_duration
from dgkip_gui.worker import Emit

log = logging.getLogger(__name__)

RunFn = Callable[..., Iterable[Any]]      # engine.distill.run(config, control, dataset)
EXPORT_FIRST, DISCARD, CANCEL = "Export…", "Discard", "Cancel"     # the answers of :meth:`RunSession.may_discard`

STAGE_TEXT = {"data": "Preparing the data…", "teacher": "Solving the teacher…", "features": "Computing features…",
              "distill": "Distilling…", "certify": "Certifying…",
              "certify-exact": "Certifying the distance to the exact teacher…"}
PROGRESS_TEXT = {"kernel": "Nyström teacher: kernel rows K(X, Z)",
                 "teacher-kernel": "Teacher: kernel matrix rows K(X, X)",
                 "teacher-features": "Teacher: feature rows Φ(X)",
                 "certify-exact": "Distance to the exact teacher: kernel rows"}


def export_name(dataset_name: str, config: DistillConfig) -> str:
    """The export folder proposed for a run: dataset, mode, loss and IPC, with each run of characters
    other than letters, digits, "_" and "." as one dash ("digits (sample)-dgkip…": one dash, not three),
    and no leading or trailing dash or dot (a dataset ".mnist" must not give a hidden folder)."""
    name = f"{dataset_name}-{config.mode}-{config.loss}-ipc{config.ipc}"
    return re.sub(r"[^\w.]+", "-", name).strip("-.")


class RunSession(Session):
    """A distillation run and its result. ``finished(outcome)``: "finished" | "stopped" | "cancelled" |
    "failed" | "not started" (bad input found while preparing the data) | "refused" (over the memory
    budget); ``exported(path)`` after the result was written to a folder."""
    finished = Signal(str)
    exported = Signal(object)             # Path
    latest_only = (Snapshot,)
    controllable = True
    noun = "A distillation"

    def __init__(self, host: JobHost, shell: Shell, *, panel: RunPanel, plots: LivePlots, grid: ImageGrid,
                 results: RunResults, settings: SettingsPanel, show_settings: Callable[[], None],
                 store: SettingsStore, run_fn: RunFn | None = None) -> None:
        super().__init__(host, shell)
        self.panel, self.plots, self.grid, self.results = panel, plots, grid, results
        self.settings, self._show_settings, self.store = settings, show_settings, store
        self.run_fn: RunFn = run_fn or distill.run
        self.config: DistillConfig | None = None      # the running (or last) run's settings
        self.result: DistillResult | None = None
        self._exported: DistillResult | None = None   # the result last written to a folder
        self.ask_before_discarding = True   # off: :meth:`may_discard` never asks (``--self-test``)
        self.dataset_name = "dataset"
        self._outcome: str | None = None
        self._stage = ""
        self._last_step: Step | None = None
        self._snapshot: Snapshot | None = None        # newest snapshot not yet shown

    def clear(self, dataset: Dataset) -> None:
        """A new dataset was loaded: forget the last result and empty the views."""
        self.result, self.dataset_name = None, dataset.name
        self.grid.reset(list(dataset.classes))
        self.results.clear()
        self.plots.reset()
        self.panel.idle(f"{dataset.name} loaded: press Distil (F5) to start.")

    @property
    def distilled_seconds(self) -> float:
        """Seconds of distillation steps the running (or last) run has done (0 before its first step)."""
        return self._last_step.elapsed if self._last_step is not None else 0.0

    @property
    def steps_done(self) -> int:
        """Distillation steps the running (or last) run has done."""
        return self._last_step.step if self._last_step is not None else 0

    @property
    def unexported(self) -> bool:
        """A result is kept that no export holds (a finished or stopped run not written to a folder)."""
        return self.result is not None and self.result is not self._exported

    def may_discard(self, doing: str) -> bool:
        """Whether ``doing`` ("Quitting", "Opening another dataset", …), which forgets the kept result,
        may go ahead: yes when every kept result is exported; otherwise the user exports it first
        (yes once it is written), discards it (yes) or cancels (no, and nothing is done)."""
        if not (self.unexported and self.ask_before_discarding):
            return True
        config = self.config or DistillConfig()
        what = f"{self.dataset_name}, {config.mode.upper()} {config.loss}, {config.ipc} per class"
        answer = self.shell.choose(
            "Export the distilled set first?",
            f"The distilled set of the last run ({what}) is not exported. {doing} discards it.",
            (EXPORT_FIRST, DISCARD, CANCEL))
        if answer == EXPORT_FIRST:
            return self.export_result() is not None
        return answer == DISCARD

    # -------------------------------------------------------------- the job
    def start(self, config: DistillConfig, dataset: Dataset) -> bool:
        """Distil ``dataset`` with ``config`` (the form's settings naming it) unless the estimate refuses
        them or the user keeps an unexported result (:meth:`may_discard`). False when nothing was started."""
        if self.host.busy:
            return False
        self.settings.update_estimate(timed=False)   # the estimate of exactly these settings, not a pending one
        if self.settings.refusal is not None:
            self._show_settings()
            self.shell.status(f"{self.settings.refusal}: pick an alternative under Settings.", 8000)
            return False
        if not self.may_discard("A new run"):
            return False
        self.settings.time_estimator.cancel()   # its step measurement must not share the CPU with the run
        self.store.set_config(config)
        control = self.control = RunControl()
        self.config, self.dataset_name = config, dataset.name
        self._outcome, self._stage, self._last_step, self._snapshot = None, "", None, None
        self.result = None
        self.plots.reset(config.steps)
        self.results.clear()
        self.grid.reset(config.classes or list(dataset.classes))
        self.panel.start_run()
        run_fn = self.run_fn

        def job(emit: Emit) -> None:
            for event in run_fn(config, control, dataset):
                emit(event)

        log.info("run started: %s", config.to_json().replace("\n", " "))
        self.start_job(job, "The distillation failed")
        return True

    def stop_message(self) -> str:
        """Stop before the steps still fits the teacher (the certificate needs it) and keeps the initial
        images; after them, certification goes on and the distance to the exact teacher is skipped
        (engine.events.stop_effect)."""
        effect = stop_effect(self._stage)
        if effect == "before-steps":
            return ("Stopping before the first step: once the teacher is fitted (the certificate needs it), the "
                    "initial images are certified and kept. Cancel (✗) abandons the run.")
        if effect == "certify":
            return "The steps are done: certifying, then keeping the result…"
        if effect == "certify-exact":
            return "Skipping the distance to the exact teacher; keeping the result…"
        return super().stop_message()

    def on_partial_result(self, event: Any) -> None:
        if isinstance(event, Step):
            self.plots.add_step(event)
            self.panel.count_step(event.step, event.elapsed)
            self._last_step = event
        elif isinstance(event, Snapshot):
            if self._outcome is None:     # coalesced snapshots drain after Done; the result wins
                self._snapshot = event
        elif isinstance(event, Evaluation):
            self.plots.add_evaluation(event)
        elif isinstance(event, TeacherProgress):
            self.plots.add_teacher(event)
            self.panel.teacher(event.iteration, event.total or self.config.teacher_max_iter, event.rel_gap,
                               event.unit)
        elif isinstance(event, Stage):
            self._stage = event.name
            if event.name != "distill":
                self.panel.busy(event.message or STAGE_TEXT.get(event.name, event.name))
        elif isinstance(event, Progress):
            eta = event.seconds * (event.total - event.done) / event.done if event.done else 0.0
            self.panel.progress(event.done, event.total,
                                f"{PROGRESS_TEXT.get(event.stage, event.stage)}: {event.done:,} of {event.total:,} "
                                f"· ETA {format_duration(eta)}")
        elif isinstance(event, TeacherDone):
            kind = (f"Nyström teacher ({event.centres:,} centres)" if event.kind == "nystrom"
                    else "Exact teacher")
            text = (f"{kind} solved: relative gap {event.rel_gap:.2e} after {event.iterations:,} {event.unit}s "
                    f"({event.seconds:.1f} s, {event.n:,} training images)")
            self.panel.explain(f"{text}.\nWhy: {event.reason}" if event.reason else text)
            self.shell.status(text, 10000)
        elif isinstance(event, Done):
            self._done(event)

    def _done(self, done: Done) -> None:
        self._outcome = done.reason
        self.result = done.result
        self.results.show_metrics(done.metrics, self.config)
        if done.result is not None:
            self._snapshot = None
            self.grid.show_images(done.result.pixels(), done.result.labels, f"final ({done.reason})",
                                  self._last_step.step if self._last_step else None)

    def render(self) -> None:
        """Redraw what the drained events changed: curves, the newest snapshot, the progress line."""
        self.plots.refresh()
        if self._snapshot is not None:
            snap, self._snapshot = self._snapshot, None
            self.grid.show_images(snap.images, snap.labels, f"step {snap.step:,}", snap.step)
        control = self.control
        if self._last_step is not None and self._stage == "distill" and control is not None:
            paused = " · paused" if control.paused else ""
            stopping = " · stopping after this step…" if control.stop_requested else ""
            self.panel.step(self._last_step.step, self._last_step.total, paused + stopping)

    def on_exception(self, report: ErrorReport) -> None:
        if isinstance(report.exception, ResourceError):       # refused before it started: not a failure
            self._outcome = "refused"
            self.settings.update_estimate()
            self._show_settings()
            return
        self._outcome = "failed"
        if isinstance(report.exception, ConfigError):
            self.settings.show_error(report.exception)
            self._show_settings()
        if is_expected(report.exception) and self._stage in ("", "data"):    # bad input, found preparing the data
            self._outcome = "not started"
            report = dataclasses.replace(report, title="The distillation could not start")
        self.shell.show_error(report)

    def on_done(self) -> None:
        outcome = self._outcome = self._outcome or "cancelled"
        self.plots.finish()
        step = f" after {self._last_step.step:,} steps" if self._last_step else ""
        rate = (self.result.metrics.get("steps_per_second") if self.result is not None
                else self.panel.steps_per_second())
        speed = f" ({rate:.1f} steps/s)" if rate else ""
        text = {"finished": f"Finished{step}{speed}.",
                "stopped": f"Stopped{step}; the result so far is kept.",
                "cancelled": "Cancelled; nothing was kept.",
                "failed": "The run failed; see the error details.",
                "not started": "Not started; see the message.",
                "refused": "Not started: the run would not fit in memory (see Settings)."}.get(outcome, outcome)
        last = self._last_step if outcome in ("finished", "stopped") else None
        self.panel.idle(text, last.step if last else None, last.total if last else None)
        if outcome == "cancelled" and self.grid.step is not None:      # still on screen: say it is not a result
            self.grid.caption.setText(f"step {self.grid.step:,}: cancelled, nothing kept")
        if self.result is not None:
            text += " Export the distilled set with Export… (Ctrl+E)."
        self.shell.status(text, 10000)
        log.info("run ended: %s%s", outcome, step)
        self.finished.emit(outcome)

    # -------------------------------------------------------------- export
    def suggested_export_name(self) -> str:
        return export_name(self.dataset_name, self.config or DistillConfig())

    def export_result(self, target: str | Path | None = None) -> Path | None:
        """Export the distilled set to ``target`` (asked for when None: :meth:`ask_export_folder`). A new
        or empty folder receives the files; an earlier export is replaced only after asking (default
        No); another non-empty folder is never replaced: a new subfolder inside it is offered instead
        (default No); a file is refused. Write failures are explained in one sentence. None when
        nothing was written."""
        if self.result is None or self.host.running:
            return None
        if target is None:
            target = self.ask_export_folder()
            if target is None:
                return None
        decided = self._export_target(Path(target).absolute())
        if decided is None:
            self.shell.status("Export cancelled; nothing was written.", 5000)
            return None
        target, overwrite = decided
        try:
            path = export.export_distilled(self.result, target, overwrite=overwrite)
        except OSError as exc:
            log.warning("export to %s failed: %s", target, exc)
            message = write_error_message(exc, target, "the distilled set")
            # the result is kept: a full disk or a folder that turned read-only must not cost the run
            if self.shell.confirm("Save the distilled set elsewhere?",
                                  f"{message}\n\nThe distilled set is kept. Choose another folder?"):
                return self.export_result()
            # declined: the question already said why; no second dialog, the status bar keeps it
            self.shell.status(f"Not exported: {message} The distilled set is kept: Export… (Ctrl+E) to try "
                              "another folder.")
            return None
        except Exception as exc:  # noqa: BLE001 - surfaced to the user
            self.shell.show_error(ErrorReport.from_exception(exc, "Export failed"))
            return None
        self._exported = self.result
        self.store.set_folder(EXPORTS, Path(path).parent)
        self.exported.emit(Path(path))
        self.shell.status(f"Exported the distilled set to {path}; Transfer… (Ctrl+T) tests it on finite networks.",
                          10000)
        log.info("exported to %s", path)
        return Path(path)

    def ask_export_folder(self) -> Path | None:
        """The export folder from :class:`dgkip_gui.open_dialog.ExportDialog`, which proposes a new folder
        named after the run (:meth:`suggested_export_name`, ``-2``… when taken) beside the last export
        and takes a typed new name (created by the export) or an existing folder. None when cancelled."""
        start = free_subfolder(Path(self.store.folder(EXPORTS)), self.suggested_export_name())
        chosen = open_dialog.choose_export_folder(
            self.shell.window, "Export the distilled set to a folder (a new name creates it)", start)
        return Path(chosen) if chosen else None

    def _export_target(self, target: Path) -> tuple[Path, bool] | None:
        """(folder to write, whether it replaces an earlier export) after asking where needed; None when
        the user said No or the target is refused."""
        kind = classify(target)
        if kind in (NEW, EMPTY):
            return target, False
        if kind == EXPORT:
            replace = self.shell.confirm("Replace the earlier export?",
                                         f"{target} holds a distilled set exported earlier. Replace it with this "
                                         "one? Its files, and any transfer results saved in it, are deleted.")
            return (target, True) if replace else None
        if kind == OTHER:
            inside = free_subfolder(target, self.suggested_export_name())
            nest = self.shell.confirm("Export into a new folder inside it?",
                                      f"{target} is not empty and is not an earlier export, so it is never replaced. "
                                      f"Export into a new folder inside it, {inside.name}?")
            return (inside, False) if nest else None
        self.shell.show_error(ErrorReport.from_exception(
            FileExistsError(f"{target} is a file, not a folder. Choose or create a folder for the export."),
            "Export refused"))
        return None
