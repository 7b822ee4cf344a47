"""The main window: dataset panel and settings on the left, run controls, live plots, the synthetic
image grid and the results tables on the right; menus, shortcuts and the status bar.

The window only builds and wires: background work belongs to the sessions of :mod:`dgkip_gui.sessions`
(loading a dataset, a distillation run, transfer on an export), which share one
:class:`~dgkip_gui.sessions.base.JobHost` so that one job runs at a time. The run and load functions are
injectable (tests pass failing ones).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, QStandardPaths, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QDragEnterEvent, QDragMoveEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (QFrame, QMainWindow, QMessageBox, QScrollArea, QSplitter,
                               QStyle, QLabel, QTabWidget, QVBoxLayout, QWidget)

from engine import data as engine_data
from engine.config import ConfigError, DistillConfig
from engine.result import DistillResult
from engine.text import shown
from dgkip_gui import APP_NAME
from dgkip_gui.dialogs import AboutDialog, ErrorDialog
from dgkip_gui.errors import ErrorReport, is_expected
from dgkip_gui.file_actions import FileActions
from dgkip_gui.garbage import collect_on_gui_thread
from dgkip_gui.logging_setup import log_path
from dgkip_gui.resources import app_icon
from dgkip_gui.sessions.base import JobHost, Shell
from dgkip_gui.sessions.load import LoadFn, LoadSession
from dgkip_gui.sessions.run import RunFn, RunSession
from dgkip_gui.sessions.transfer import TransferSession
from dgkip_gui.widgets.settings_panel import SettingsPanel
from dgkip_gui.settings_store import SAMPLE, SettingsStore
from dgkip_gui.system_info import device_description, memory_description
from dgkip_gui.transfer_dialog import TransferOptions
from dgkip_gui.widgets.wheel_guard import PageWheel, guard_wheel
from dgkip_gui.widgets.dataset_panel import DatasetPanel, display_name, recent_names
from dgkip_gui.widgets.image_grid import ImageGrid
from dgkip_gui.widgets.plots import LivePlots
from dgkip_gui.widgets.results_view import RunResults
from dgkip_gui.widgets.run_panel import RunPanel, format_duration
from dgkip_gui.widgets.transfer_panel import ExportInfo, TransferPanel

log = logging.getLogger(__name__)

RESULT_TABS = ("Run", "Transfer")     # the results area: run metrics, networks trained on the export


STOP_AND_QUIT, DISCARD_AND_QUIT, KEEP_RUNNING = "Stop and quit", "Discard and quit", "Keep running"
"""The answers to quitting during a distillation (the first keeps the result for the export question)."""
STOP_INSTEAD, DISCARD_RUN = "Stop and keep", "Discard the run"
"""The answers to Cancel on a distillation that has stepped for ASK_BEFORE_CANCEL_S (and KEEP_RUNNING)."""
ASK_BEFORE_CANCEL_S = 60.0


TRANSFER_TIP = "Train finite networks on the exported set and test them on the real data"


def set_tip(action: QAction, tip: str) -> None:
    """``action``'s tool tip: ``tip`` and its shortcuts ("Distil (Ctrl+R, F5)")."""
    keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts())
    action.setToolTip(f"{tip} ({keys})" if keys else tip)


class MainWindow(QMainWindow):
    """DGKIP Studio's window. Signals let tests and ``--self-test`` wait on the real flow."""
    dataset_loaded = Signal(object)        # engine.data.Dataset
    run_finished = Signal(str)             # "finished" | "stopped" | "cancelled" | "failed" | "not started" | "refused"
    transfer_finished = Signal(str)      # "finished" | "stopped" | "cancelled" | "failed"
    error_shown = Signal(object)           # ErrorReport

    def __init__(self, store: SettingsStore | None = None, *, run_fn: RunFn | None = None,
                 load_fn: LoadFn | None = None) -> None:
        super().__init__()
        collect_on_gui_thread()          # never on a job thread: see dgkip_gui.garbage
        self.store = store or SettingsStore()
        self.error_dialog: ErrorDialog | None = None
        self._close_requested = False

        self.setWindowTitle(APP_NAME)
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self._make_actions()
        self._make_widgets()
        self._make_sessions(run_fn, load_fn)
        self._make_menus()
        self._make_status_bar()
        guard_wheel(self)

        saved = self.store.config()
        if saved is not None:
            self.settings.set_config(saved)
        self.dataset_panel.show_empty(self.store.recent())
        self._rebuild_recent_menu()
        geometry = self.store.layout("geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(self.first_size())
        for name, splitter in self._splitters.items():
            state = self.store.layout(name)
            if state is not None:
                splitter.restoreState(state)
        self._update_actions()

    def _distil_blocked(self) -> str | None:
        """Why Distil is off for the loaded dataset and the form's settings, as one sentence: the estimate's
        refusal, or chosen classes without test images (the engine refuses such a run before its teacher,
        engine.data.check_test_split; the Dataset tab's problem list says so too)."""
        if self.settings.refusal is not None:
            return f"Distil is off. {self.settings.refusal}: see the alternatives under Settings."
        config = self.settings.valid_config()
        if config is None:              # Distil is off anyway, and the form says what is wrong
            return None
        untested = engine_data.untested_classes(self.dataset, config.classes or None)
        if not untested:
            return None
        many = len(untested) > 1
        # the way out before the example: a narrow run bar elides the end of the sentence
        return (f"Distil is off. {len(untested):,} class{'es have' if many else ' has'} no test images: set "
                f"test data on the Dataset tab, add images, or leave {'them' if many else 'it'} out under "
                f"Settings › Classes (e.g. {shown(untested[0])}).")

    def first_size(self) -> QSize:
        """The size of a first launch: 1440 × 900, less where the screen is smaller (a window wider than
        a 1024 × 700 screen opened with its right side and status bar off the screen)."""
        screen = self.screen()
        wanted = QSize(1440, 900)
        return wanted if screen is None else wanted.boundedTo(screen.availableGeometry().size())

    # ------------------------------------------------------------------ construction
    def _action(self, name: str, text: str, slot: Callable[[], Any], shortcuts: tuple[str | QKeySequence, ...] = (),
                icon: QStyle.StandardPixmap | None = None, tip: str = "") -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcuts:
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        set_tip(action, tip or text.replace("…", "").replace("&", ""))
        action.triggered.connect(lambda _=False: slot())
        self.addAction(action)
        return action

    def _make_actions(self) -> None:
        sp = QStyle.StandardPixmap
        self.act_open = self._action("open", "&Open file or folder…", lambda: self.load_session.open_file(),
                                     (QKeySequence.StandardKey.Open,), sp.SP_DialogOpenButton,
                                     "Open a dataset: a folder, an .npz file, IDX files or CIFAR batches")
        self.act_open_folder = self._action("open_folder", "Open &folder…", lambda: self.load_session.open_folder(),
                                            ("Ctrl+Shift+O",), sp.SP_DirOpenIcon, "Open a dataset folder")
        self.act_sample = self._action("sample", "Use the &sample dataset", lambda: self.load_dataset(SAMPLE))
        self.act_test_folder = self._action("test_folder", "Set &test data folder…",
                                            lambda: self.load_session.choose_test_data("folder"))
        self.act_test_file = self._action("test_file", "Set test data file…",
                                          lambda: self.load_session.choose_test_data("file"))
        self.act_load_settings = self._action("load_settings", "Load settings…", lambda: self.files.load_settings())
        self.act_save_settings = self._action("save_settings", "Save settings as…",
                                              lambda: self.files.save_settings())
        self.act_export = self._action("export", "&Export…", self.export_result, ("Ctrl+E",), sp.SP_DialogSaveButton,
                                       "Export the distilled set to a folder")
        self.act_export_png = self._action("export_png", "Export plots as PNG…", self.export_plots_png)
        self.act_export_csv = self._action("export_csv", "Export curves as CSV…", self.export_curves_csv)
        self.act_quit = self._action("quit", "&Quit", self.close, ("Ctrl+Q",))
        self.act_run = self._action("run", "&Distil", self.start_run, ("Ctrl+R", "F5"), sp.SP_MediaPlay,
                                    "Start distilling with the current settings")
        self.act_pause = self._action("pause", "&Pause", self.toggle_pause, ("Space",), sp.SP_MediaPause,
                                      "Pause or resume the run")
        self.act_stop = self._action("stop", "&Stop", self.stop_run, ("Esc",), sp.SP_MediaStop,
                                     "Finish the current step and keep the result (export stays possible)")
        self.act_cancel = self._action("cancel", "&Cancel", self.cancel_run, (), sp.SP_DialogCancelButton,
                                       "Abandon the run and discard its result")
        self.act_transfer = self._action("transfer", "&Transfer…", self.start_transfer, ("Ctrl+T",),
                                         sp.SP_FileDialogContentsView,
                                         TRANSFER_TIP)
        self.act_open_export = self._action("open_export", "Transfer an e&xported set…",
                                            lambda: self.transfer_session.open_folder(), ("Ctrl+Shift+T",),
                                            sp.SP_DirOpenIcon)
        self.act_cluster_job = self._action("cluster_job", "Export a c&luster job…",
                                            lambda: self.files.cluster_job(), (), None,
                                            "Write the current settings, a torchrun command and a Slurm template "
                                            "to run on other machines")
        self.act_export_transfer = self._action("export_transfer", "Export transfer table as CSV…",
                                                self.export_transfer_csv)
        self.act_open_export.setIconText("Open export…")      # the shorter labels of the Transfer tab's buttons
        self.act_export_transfer.setIconText("Save CSV…")
        self.act_about = self._action("about", "&About DGKIP Studio", self.show_about)
        self.act_log = self._action("log", "Open the log folder", self.open_log_folder)

    def _make_widgets(self) -> None:
        self.dataset_panel = DatasetPanel()
        self.settings = SettingsPanel()
        self.settings.changed.connect(self._settings_changed)
        self.settings.estimate_changed.connect(self._update_actions)
        self.settings.replaced.connect(self._settings_replaced)
        left = QTabWidget()
        left.addTab(self.dataset_panel, "Dataset")
        left.addTab(self.settings, "Settings")
        self.left_tabs = left

        self.run_panel = RunPanel([self.act_run, self.act_pause, self.act_stop, self.act_cancel],
                                  [self.act_export, self.act_transfer])
        self.plots = LivePlots()
        self.grid = ImageGrid()
        self.results = RunResults()
        self.transfer_panel = TransferPanel([self.act_transfer, self.act_open_export, self.act_export_transfer])
        self.results_tabs = QTabWidget()
        self.results_tabs.setDocumentMode(True)
        for widget, title in zip((self.results, self.transfer_panel), RESULT_TABS):
            self.results_tabs.addTab(widget, title)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(_titled("Synthetic images (pixel space)", self.grid))
        bottom.addWidget(_titled("Results", self.results_tabs))
        bottom.setStretchFactor(0, 3)
        bottom.setStretchFactor(1, 2)
        bottom.setSizes([600, 400])
        right_split = QSplitter(Qt.Orientation.Vertical)
        right_split.addWidget(self.plots)
        right_split.addWidget(bottom)
        right_split.setStretchFactor(0, 3)
        right_split.setStretchFactor(1, 2)
        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(right_split)
        main.setStretchFactor(0, 0)
        main.setStretchFactor(1, 1)
        main.setSizes([400, 1040])
        # the run's controls and progress across the top, outside the area that scrolls in a small window
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.run_panel)
        self.panels = _scrolling(main)
        layout.addWidget(self.panels, 1)
        self.setCentralWidget(central)
        page_wheel = PageWheel(self.panels, self)
        for view in (self.plots.view, self.grid.view):
            view.viewport().installEventFilter(page_wheel)
        self._splitters = {"main_splitter": main, "right_splitter": right_split, "bottom_splitter": bottom}

    def _make_sessions(self, run_fn: RunFn | None, load_fn: LoadFn | None) -> None:
        """The three kinds of background job, each handed the views it drives; one job at a time."""
        self.jobs = JobHost(self)
        self.jobs.changed.connect(self._job_changed)
        shell = Shell(self, self.statusBar().showMessage, self.show_error, self.confirm, self.choose)
        self.load_session = LoadSession(self.jobs, shell, panel=self.dataset_panel, store=self.store,
                                        show_panel=lambda: self.left_tabs.setCurrentIndex(0),
                                        config=self.settings.valid_config, load_fn=load_fn,
                                        may_replace=lambda doing: self.run_session.may_discard(doing))
        self.load_session.loaded.connect(self._dataset_ready)
        panel = self.dataset_panel
        panel.sample_requested.connect(lambda: self.load_dataset(SAMPLE))
        panel.open_requested.connect(self.load_session.open_file)
        panel.open_folder_requested.connect(self.load_session.open_folder)
        panel.recent_requested.connect(self.load_dataset)
        panel.test_data_requested.connect(self.load_session.choose_test_data)
        self.run_session = RunSession(self.jobs, shell, panel=self.run_panel, plots=self.plots, grid=self.grid,
                                      results=self.results, settings=self.settings,
                                      show_settings=lambda: self.left_tabs.setCurrentIndex(1), store=self.store,
                                      run_fn=run_fn)
        self.run_session.finished.connect(self.run_finished)
        self.run_session.exported.connect(lambda path: self.transfer_session.open_export(path, show=False))
        self.transfer_session = TransferSession(self.jobs, shell, panel=self.transfer_panel, run_panel=self.run_panel,
                                                show_panel=lambda: self.results_tabs.setCurrentWidget(
                                                    self.transfer_panel),
                                                device=self._form_device, store=self.store)
        self.transfer_session.finished.connect(self.transfer_finished)
        self.transfer_session.export_changed.connect(self._update_actions)
        self.files = FileActions(shell, self.jobs, self.store, self.settings, form_config=self._form_config,
                                 with_data=self.load_session.with_data, inform=self.inform)

    def _make_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.act_open, self.act_open_folder])
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.setToolTipsVisible(True)          # each entry's full path
        file_menu.addActions([self.act_sample, self.act_test_folder, self.act_test_file])
        file_menu.addSeparator()
        file_menu.addActions([self.act_load_settings, self.act_save_settings])
        file_menu.addSeparator()
        file_menu.addActions([self.act_export, self.act_export_png, self.act_export_csv, self.act_export_transfer])
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        run_menu = bar.addMenu("&Run")
        run_menu.addActions([self.act_run, self.act_pause, self.act_stop, self.act_cancel])
        run_menu.addSeparator()
        run_menu.addActions([self.act_transfer, self.act_open_export])
        run_menu.addSeparator()
        run_menu.addAction(self.act_cluster_job)
        help_menu = bar.addMenu("&Help")
        help_menu.addActions([self.act_log, self.act_about])

    def _make_status_bar(self) -> None:
        self.device_label = QLabel()
        self.memory_label = QLabel()
        self.statusBar().addPermanentWidget(self.device_label)
        self.statusBar().addPermanentWidget(self.memory_label)
        self._memory_timer = QTimer(self, interval=2000)
        self._memory_timer.timeout.connect(self._update_memory)
        self._memory_timer.start()
        self._update_memory()
        self._settings_changed()

    def _rebuild_recent_menu(self, recent: list[str] | None = None) -> None:
        recent = self.store.recent() if recent is None else recent
        self.recent_menu.clear()
        for path, name in zip(recent, recent_names(recent)):
            action = self.recent_menu.addAction(name)
            action.setToolTip(path)
            action.triggered.connect(lambda _=False, p=path: self.load_dataset(p))
        self.recent_menu.setEnabled(bool(recent))

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        """A job (load, run or transfer) is in progress."""
        return self.jobs.busy

    @property
    def running(self) -> bool:
        """A distillation or a transfer is in progress (pause, stop and cancel apply)."""
        return self.jobs.running

    @property
    def dataset(self) -> engine_data.Dataset | None:
        return self.load_session.dataset

    @property
    def result(self) -> DistillResult | None:
        return self.run_session.result

    @property
    def export_info(self) -> ExportInfo | None:
        return self.transfer_session.export_info

    def _update_actions(self) -> None:
        busy, running, control = self.busy, self.running, self.jobs.control
        blocked = self._distil_blocked() if self.dataset is not None and not busy else None
        self.act_run.setEnabled(not busy and self.dataset is not None and self.settings.error is None
                                and blocked is None)
        self.act_run.setToolTip(blocked or "Start distilling with the current settings (Ctrl+R, F5)")
        self.run_panel.block(blocked)
        for action in (self.act_open, self.act_open_folder, self.act_sample, self.act_load_settings):
            action.setEnabled(not busy)
        for action in (self.act_test_folder, self.act_test_file):
            action.setEnabled(not busy and self.dataset is not None)
        stoppable = running and control is not None and not control.stop_requested and not control.cancelled
        self.act_pause.setEnabled(stoppable)
        paused = control is not None and control.paused
        self.act_pause.setText("&Resume" if paused else "&Pause")      # the toolbar button shows what it does
        self.act_pause.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay if paused
                                                         else QStyle.StandardPixmap.SP_MediaPause))
        self.act_stop.setEnabled(stoppable)
        self.act_cancel.setEnabled(running and control is not None and not control.cancelled)
        self.act_export.setEnabled(self.result is not None and not running)
        self.act_transfer.setEnabled(self.export_info is not None and not busy)
        info = self.export_info           # which export Transfer trains on (it outlives a new dataset)
        set_tip(self.act_transfer, TRANSFER_TIP if info is None else
                f"Train finite networks on the export {info.path.name} ({info.n_images:,} images of "
                f"{display_name(info.data)}) and test them on its real data")
        self.act_open_export.setEnabled(not busy)
        self.act_cluster_job.setEnabled(not busy)
        self.act_export_transfer.setEnabled(self.transfer_panel.table.rowCount() > 0 and not busy)
        self.settings.setEnabled(not busy)
        self.recent_menu.setEnabled(not busy and bool(self.recent_menu.actions()))

    def _job_changed(self) -> None:
        """A job started, was paused, stopped or cancelled, or ended (then a requested close proceeds)."""
        self._update_actions()
        if self._close_requested and not self.busy:
            self.close()

    def _settings_changed(self) -> None:
        config = self.settings.valid_config()
        self.device_label.setText(device_description(config.device if config else "auto"))
        self._update_actions()

    def _form_device(self) -> str:
        config = self.settings.valid_config()
        return config.device if config else "auto"

    def _settings_replaced(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)

    def _update_memory(self) -> None:
        self.memory_label.setText(memory_description())

    # ------------------------------------------------------------------ datasets
    def load_dataset(self, path: str | Path, test_path: str | Path | None = None) -> bool:
        """Load a dataset on a worker thread; ``dataset_loaded`` fires when done. False when busy."""
        return self.load_session.load(path, test_path)

    def _dataset_ready(self, dataset: engine_data.Dataset) -> None:
        self.settings.set_dataset(list(dataset.classes), dataset.report)
        self.run_session.clear(dataset)
        self._rebuild_recent_menu()
        self.setWindowTitle(f"{dataset.name} — {APP_NAME}")
        self.dataset_loaded.emit(dataset)

    # drag and drop anywhere on the window -------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if _dropped_path(event) is not None and not self.busy:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        path = _dropped_path(event)
        if path is None or self.busy:
            event.ignore()
            return
        event.acceptProposedAction()
        # after the drop has finished: loading may ask about an unexported result, and a modal
        # question inside the drop would keep the drag source waiting
        QTimer.singleShot(0, lambda: self.load_dataset(path))

    # ------------------------------------------------------------------ runs
    def _form_config(self) -> DistillConfig | None:
        """The form's settings, or None after showing what to fix (the field marked, Settings shown)."""
        try:
            return self.settings.config()
        except ConfigError as exc:
            self.settings.show_error(exc)
            self.left_tabs.setCurrentIndex(1)
            self.statusBar().showMessage(f"Fix the settings first: {exc}", 8000)
            return None

    def start_run(self) -> bool:
        """Start distilling the loaded dataset with the form's settings. False when that is not possible."""
        dataset = self.dataset
        if self.busy or dataset is None:
            return False
        config = self._form_config()
        return config is not None and self.run_session.start(self.load_session.with_data(config), dataset)

    def toggle_pause(self) -> None:
        if self.jobs.session is not None:
            self.jobs.session.toggle_pause()

    def stop_run(self) -> None:
        """Finish the current step (or seed) and keep the result (export stays possible)."""
        if self.jobs.session is not None:
            self.jobs.session.stop()

    def cancel_run(self) -> None:
        """Abandon the run (also during the teacher solve); nothing is kept. A distillation that has
        stepped for :data:`ASK_BEFORE_CANCEL_S` or more asks first (Stop keeps its result)."""
        session = self.jobs.session
        if session is None:
            return
        if session is self.run_session and session.distilled_seconds >= ASK_BEFORE_CANCEL_S:
            answer = self.choose("Cancel the run?", f"Cancel throws away its {session.steps_done:,} steps "
                                 f"({format_duration(session.distilled_seconds)}); Stop ends the run and keeps "
                                 "them.", (STOP_INSTEAD, DISCARD_RUN, KEEP_RUNNING))
            if answer == STOP_INSTEAD:
                session.stop()
            if answer != DISCARD_RUN:
                return
        session.cancel()

    # ------------------------------------------------------------------ export
    def export_result(self, target: str | Path | None = None) -> Path | None:
        """Export the distilled set (see :meth:`RunSession.export_result`); None when nothing was written."""
        return self.run_session.export_result(target)

    def export_plots_png(self, path: str | Path | None = None) -> Path | None:
        return self.files.save_file(self.plots.export_png, "plots", path, "curves.png", "PNG image (*.png)")

    def export_curves_csv(self, path: str | Path | None = None) -> Path | None:
        return self.files.save_file(self.plots.export_csv, "curves", path, "curves.csv", "CSV table (*.csv)")

    # ------------------------------------------------------------------ transfer
    def open_export(self, path: str | Path, show: bool = True) -> bool:
        """Make ``path`` the export that transfer works on (see :meth:`TransferSession.open_export`)."""
        return self.transfer_session.open_export(path, show)

    def start_transfer(self, options: TransferOptions | None = None) -> bool:
        """Train networks on the open export (see :meth:`TransferSession.start`); False when nothing started."""
        return self.transfer_session.start(options)

    def export_transfer_csv(self, path: str | Path | None = None) -> Path | None:
        """Save the transfer table as CSV (default location: the export folder)."""
        default = self.export_info.path / "transfer.csv" if self.export_info is not None else "transfer.csv"
        return self.files.save_file(self.transfer_panel.table.write_csv, "transfer table", path, default,
                                    "CSV table (*.csv)")

    # ------------------------------------------------------------------ dialogs
    def confirm(self, title: str, text: str) -> bool:
        """Ask a yes/no question (tests monkeypatch ``QMessageBox.question``)."""
        answer = QMessageBox.question(self, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def choose(self, title: str, text: str, answers: tuple[str, ...]) -> str:
        """Ask with named ``answers`` (the first the default, the last what Escape or closing the box
        gives); the chosen one (tests monkeypatch this method)."""
        box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.NoButton, self)
        buttons = [box.addButton(answer, QMessageBox.ButtonRole.AcceptRole if i == 0 else
                                 QMessageBox.ButtonRole.RejectRole if i == len(answers) - 1 else
                                 QMessageBox.ButtonRole.DestructiveRole) for i, answer in enumerate(answers)]
        box.setDefaultButton(buttons[0])
        box.setEscapeButton(buttons[-1])
        box.exec()
        clicked = box.clickedButton()
        return answers[buttons.index(clicked)] if clicked in buttons else answers[-1]

    def inform(self, title: str, text: str) -> None:
        """A message with an OK button (tests monkeypatch ``QMessageBox.information``)."""
        QMessageBox.information(self, title, text)

    def show_error(self, report: ErrorReport) -> None:
        """Show the error dialog (non-modal, so no event loop is blocked) and log the report (bad input
        and environment limits at WARNING without traceback, anything else at ERROR with it)."""
        if is_expected(report.exception):
            log.warning("%s: %s", report.title, report.message)
        else:
            log.error("%s: %s\n%s", report.title, report.message, report.details)
        if self.error_dialog is not None:
            self.error_dialog.close()
        self.error_dialog = ErrorDialog(report, self)
        self.error_dialog.show()
        self.error_dialog.raise_()
        self.error_dialog.activateWindow()      # keys go to it: Escape closes it, not the window's Stop
        self.error_shown.emit(report)

    def show_about(self) -> None:
        AboutDialog(self).exec()

    def open_log_folder(self) -> None:
        path = log_path()
        folder = path.parent if path else Path(QStandardPaths.writableLocation(
            QStandardPaths.StandardLocation.AppDataLocation))
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    # ------------------------------------------------------------------ closing
    def abort_and_wait(self, timeout_s: float = 30.0) -> bool:
        """Cancel any job and run the event loop until it has ended; True when it has."""
        return self.jobs.abort_and_wait(timeout_s)

    def closeEvent(self, event: QCloseEvent) -> None:
        """During a job: ask, end it, and close once it has ended (never left behind); a distillation
        may be stopped (its result kept) or discarded, other jobs are cancelled. With a result no export
        holds: ask to export it first (:meth:`RunSession.may_discard`)."""
        session = self.jobs.session
        if session is not None:
            if not self._close_requested:
                if session is self.run_session and self.running:
                    # Stop keeps the result, which the export question below then offers to save
                    answer = self.choose("Quit during a run?", f"{session.noun} is running. Stop keeps what it "
                                         "has done (you can export it before the app closes); Discard throws "
                                         "it away.", (STOP_AND_QUIT, DISCARD_AND_QUIT, KEEP_RUNNING))
                    if answer == KEEP_RUNNING:
                        event.ignore()
                        return
                    if answer == STOP_AND_QUIT:
                        session.stop()
                    else:
                        self.jobs.cancel()
                elif self.running and not self.confirm("Quit during a run?", f"{session.noun} is running. "
                                                       "Cancel it and quit? Nothing of it is kept."):
                    event.ignore()
                    return
                else:
                    self.jobs.cancel()
                self._close_requested = True
                self.statusBar().showMessage("Stopping before closing…")
            event.ignore()
            return
        if not self.run_session.may_discard("Quitting"):
            self._close_requested = False     # no later job's end may close the window unasked
            event.ignore()
            return
        self.settings.time_estimator.cancel(wait_s=1.0)
        self._save_state()
        self.jobs.shut_down()
        self._memory_timer.stop()
        if self.error_dialog is not None:
            self.error_dialog.close()
        event.accept()

    def _save_state(self) -> None:
        self.store.set_layout("geometry", self.saveGeometry())
        for name, splitter in self._splitters.items():
            self.store.set_layout(name, splitter.saveState())
        config = self.settings.valid_config()
        if config is not None:
            self.store.set_config(self.load_session.with_data(config))
        self.store.sync()


# the least the panels' scroll area keeps on screen (the run bar above it sets the window's minimum width)
PANELS_MINIMUM = QSize(320, 240)


def _scrolling(content: QWidget) -> QScrollArea:
    """``content`` filling a frameless scroll area: it takes the whole area while that is at least its
    minimum size (about 1,000 × 470 px), and scrolls where the window is smaller (a 1,280 × 800 screen
    at 150 % scaling is 853 × 533 px), so nothing forces the window larger than the screen."""
    area = QScrollArea()
    area.setWidget(content)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setMinimumSize(PANELS_MINIMUM)
    return area


def _titled(title: str, widget: QWidget) -> QWidget:
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(4, 2, 4, 2)
    label = QLabel(f"<b>{title}</b>")
    layout.addWidget(label)
    layout.addWidget(widget, 1)
    return box


def _dropped_path(event: QDropEvent | QDragEnterEvent) -> str | None:
    """The first local file or folder in a drag's URLs, if any."""
    mime = event.mimeData()
    if mime is None or not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile() and url.toLocalFile():
            return url.toLocalFile()
    return None
