"""Transfer: finite networks trained from scratch on an exported distilled set and tested on the real
test set (:func:`engine.transfer.exported.transfer_exported`), on a worker thread, live in the Transfer tab."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialog, QFileDialog

from engine import data as engine_data
from engine.control import RunControl
from engine.device import resolve_device
from engine.transfer import transfer_exported
from engine.transfer import QUICK_EPOCHS, TransferProgress, TransferScore, TransferSummary
from dgkip_gui.errors import ErrorReport
from dgkip_gui.open_dialog import DATASET_FILES
from dgkip_gui.sessions.base import JobHost, Session, Shell
from dgkip_gui.settings_store import DATASETS, EXPORTS, SAMPLE, SettingsStore
from dgkip_gui.transfer_dialog import TransferDialog, TransferOptions, default_options
from dgkip_gui.warmup import warm_up
from dgkip_gui.widgets.dataset_panel import display_name
from dgkip_gui.widgets.run_panel import RunPanel
from dgkip_gui.widgets.transfer_panel import TransferPanel, ExportInfo, progress_text, summary_text
from dgkip_gui.worker import Emit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransferEnded:
    """The last event of a transfer job that ran to its end (``stopped``: after a Stop request)."""
    stopped: bool


class TransferSession(Session):
    """The open export and the transfer runs on it. ``finished(outcome)``: "finished" | "stopped" |
    "cancelled" | "failed"; ``export_changed()`` when another export was opened."""
    finished = Signal(str)
    export_changed = Signal()
    latest_only = (TransferProgress,)
    controllable = True
    stop_unit = "seed"
    noun = "A transfer"

    def __init__(self, host: JobHost, shell: Shell, *, panel: TransferPanel, run_panel: RunPanel,
                 show_panel: Callable[[], None], device: Callable[[], str], store: SettingsStore) -> None:
        super().__init__(host, shell)
        self.panel, self.run_panel, self._show_panel, self._device, self.store = (panel, run_panel, show_panel,
                                                                                  device, store)
        self.export_info: ExportInfo | None = None       # the export that transfer works on
        self.options: TransferOptions | None = None      # the running (or last) transfer's options
        self._outcome: str | None = None
        self._progress: TransferProgress | None = None
        self._clock: tuple[float, int] | None = None     # (time, epochs done) at the first epoch
        self._error = ""

    # -------------------------------------------------------------- the export
    def open_export(self, path: str | Path, show: bool = True) -> bool:
        """Make ``path`` the export that transfer works on and show its saved results (``show``: switch to
        the Transfer tab). A folder that is not an export gets the error dialog; False then."""
        try:
            info = ExportInfo.read(path)
        except (engine_data.DatasetError, OSError) as exc:
            self.shell.show_error(ErrorReport.from_exception(exc, "Not a distilled-set export"))
            return False
        self.export_info = info
        self.panel.show_export(info)
        if show:
            self._show_panel()
        self.export_changed.emit()
        return True

    def open_folder(self) -> None:
        """Choose an export folder, show its saved results, then ask how to train networks on it."""
        if self.host.busy:
            return
        path = QFileDialog.getExistingDirectory(self.shell.window, "Transfer an exported distilled set",
                                                self.store.folder(EXPORTS))
        if path and self.open_export(path):
            self.start()

    def defaults(self) -> TransferOptions:
        """The dialog's starting point for the open export: its run's dataset, the last choices, and
        quick training on a CPU (the full recipe on a GPU)."""
        info = self.export_info
        cpu = self._device_and_reason()[0] == "cpu"
        return default_options(info.data if info else SAMPLE, info.test_data if info else None, self.options,
                               QUICK_EPOCHS if cpu else None)

    def _device_and_reason(self) -> tuple[str, str]:
        """(device type, why it differs from the form's choice or ""): the settings form's device, or the
        CPU, said plainly, when the form names one this machine lacks (a distillation run would refuse)."""
        device = self._device()
        try:
            return resolve_device(device).type, ""
        except RuntimeError:
            return "cpu", f"the settings ask for {device}, which this machine does not have"

    # -------------------------------------------------------------- the job
    def start(self, options: TransferOptions | None = None) -> bool:
        """Train ``options.networks`` from scratch on the open export on a worker thread and test them on
        the real test set. Without ``options`` the options dialog asks first. ``finished`` fires at the
        end. False when nothing was started."""
        info = self.export_info
        if self.host.busy or info is None:
            return False
        if options is None:
            dialog = TransferDialog(info.path, self.defaults(), start_dir=self.store.folder(DATASETS),
                                    dataset_filter=DATASET_FILES, parent=self.shell.window)
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return False
            options = dialog.options()
        device, reason = self._device_and_reason()
        control = self.control = RunControl()
        self.options = options
        self._outcome, self._progress, self._clock, self._error = None, None, None, ""
        self.panel.table.begin(options)
        self.panel.set_note(f"Transfer to {display_name(options.data)} ({device}"
                            + (f": {reason}" if reason else "") + ")…")
        self._show_panel()
        self.run_panel.busy(f"Loading {display_name(options.data)} for the transfer…")
        path = str(info.path)

        def job(emit: Emit) -> None:
            warm_up()
            for event in transfer_exported(path, options.data, test_path=options.test_data, networks=options.networks,
                                         seeds=options.seeds, epochs=options.epochs, device=device, control=control):
                emit(event)
            emit(TransferEnded(control.stop_requested))

        log.info("transfer started: %s on %s, %s", path, device, options)
        self.start_job(job, "The transfer failed")
        return True

    def on_partial_result(self, event: Any) -> None:
        if isinstance(event, TransferProgress):
            self._progress = event
        elif isinstance(event, TransferScore):
            self.panel.table.add_score(event)
        elif isinstance(event, TransferSummary):
            self.panel.table.add_summary(event)
        elif isinstance(event, TransferEnded):
            self._outcome = "stopped" if event.stopped else "finished"

    def render(self) -> None:
        """Progress bar over all epochs of all networks and seeds, with the current network, seed and ETA."""
        event, options, control = self._progress, self.options, self.control
        if event is None or options is None:
            return
        done, total = options.epochs_done(event.network, event.seed, event.epoch), options.total_epochs()
        now = time.monotonic()
        if self._clock is None:
            self._clock = (now, done)
        start, done_then = self._clock
        eta = (total - done) * (now - start) / (done - done_then) if done > done_then else None
        text = progress_text(event, options.seeds, eta)
        if control is not None and control.paused:
            text += " · paused"
        if control is not None and control.stop_requested:
            text += " · stopping after this seed…"
        self.run_panel.progress(done, total, text)

    def on_exception(self, report: ErrorReport) -> None:
        self._outcome = "failed"
        self._error = report.message
        self.shell.show_error(report)

    def on_done(self) -> None:
        """Show what the manifest now holds (each network is saved when its seeds finish, so even a
        cancelled or failed transfer may have saved some) and say how it ended."""
        outcome = self._outcome or "cancelled"
        if self.export_info is not None:
            self.open_export(self.export_info.path, show=False)
        text = {"finished": "Transfer finished; saved in manifest.json.",
                "stopped": "Transfer stopped; the finished seeds are saved in manifest.json.",
                "cancelled": "Transfer cancelled; networks not finished were not saved.",
                "failed": f"The transfer failed: {self._error}"}[outcome]
        scores = summary_text(self.panel.table.accuracies()) if outcome in ("finished", "stopped") else ""
        self.run_panel.idle(f"Transfer: {scores}" if scores else text)
        self.panel.set_note(text)
        self.shell.status(text, 10000)
        log.info("transfer ended: %s", outcome)
        self.finished.emit(outcome)
