"""The main window: dataset panel and settings on the left, run controls, live plots, the synthetic
image grid and the results table on the right.

Long work (loading a dataset, a distillation run, the transfer evaluation of an export) runs as a
:class:`~dgkip_gui.worker.Job` on its own QThread. The window drains the job's event queue on a repaint
timer, so the engine can emit an event per step without flooding the GUI. The run and load functions are injectable (tests pass failing ones).
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QStandardPaths, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QDragEnterEvent, QDragMoveEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (QApplication, QDialog, QFileDialog, QMainWindow, QMessageBox, QSplitter,
                               QStyle, QLabel, QTabWidget, QVBoxLayout, QWidget)

from engine import ResourceError
from engine import data as engine_data
from engine import distill, export
from engine.cluster_job import EXPORT_NAME, JobOptions, write_cluster_job
from engine.config import ConfigError, DistillConfig
from engine.control import RunControl
from engine.device import resolve_device
from engine.evaluate import evaluate_export
from engine.events import Done, Evaluation, Progress, Snapshot, Stage, Step, TeacherDone, TeacherProgress
from engine.result import DistillResult
from engine.transfer import QUICK_EPOCHS, TransferProgress, TransferScore, TransferSummary
from dgkip_gui import APP_NAME, open_dialog
from dgkip_gui.cluster_job_dialog import ClusterJobDialog
from dgkip_gui.widgets.dataset_panel import DatasetPanel, display_name
from dgkip_gui.dialogs import AboutDialog, ErrorDialog
from dgkip_gui.errors import ErrorReport, is_expected
from dgkip_gui.transfer_dialog import EvaluateDialog, EvaluateOptions, default_options
from dgkip_gui.widgets.transfer_panel import EvaluatePanel, ExportInfo, progress_text, summary_text
from dgkip_gui.export_target import EMPTY, EXPORT, NEW, OTHER, classify, free_subfolder, write_error_message
from dgkip_gui.widgets.image_grid import ImageGrid
from dgkip_gui.logging_setup import log_path
from dgkip_gui.open_dialog import DATASET_FILES
from dgkip_gui.widgets.plots import LivePlots
from dgkip_gui.resources import app_icon
from dgkip_gui.widgets.results_view import RunResults
from dgkip_gui.widgets.run_panel import RunPanel, format_duration
from dgkip_gui.settings_panel import SettingsPanel
from dgkip_gui.settings_store import DATASETS, EXPORTS, SAMPLE, SettingsStore
from dgkip_gui.system_info import device_description, memory_description
from dgkip_gui.warmup import warm_up
from dgkip_gui.wheel_guard import guard_wheel
from dgkip_gui.worker import Emit, Job

log = logging.getLogger(__name__)

RunFn = Callable[..., Iterable[Any]]      # engine.distill.run(config, control, dataset)
LoadFn = Callable[..., Any]               # engine.data.load_dataset(path, *, test_path, ..., progress)

REFRESH_MS = 100         # period of the repaint timer while a job runs: drain events, phase changes
VIEW_REFRESH_S = 0.25    # plots, image grid and progress redraw at most this often: painting holds the
                         # GIL, and every millisecond of it is taken from the engine thread
STAGE_TEXT = {"data": "Preparing the data…", "kernel": "Computing kernels…", "teacher": "Solving the teacher…",
              "features": "Computing features…", "distill": "Distilling…", "evaluate": "Evaluating…", "export": "Exporting…",
              "certify-exact": "Certifying the distance to the exact teacher…"}
PROGRESS_TEXT = {"kernel": "Nyström teacher: kernel rows K(X, Z)",
                 "teacher-kernel": "Teacher: kernel matrix rows K(X, X)",
                 "teacher-features": "Teacher: feature rows Φ(X)",
                 "certify-exact": "Distance to the exact teacher: kernel rows"}
SETTINGS_FILES = "Run settings (*.json)"
RESULT_TABS = ("Run", "Transfer")     # the results area: run metrics, transfer evaluation


@dataclass(frozen=True)
class LoadProgress:
    """Images decoded so far, as reported by ``engine.data.load_dataset(progress=...)``."""
    done: int
    total: int


@dataclass(frozen=True)
class Loaded:
    """The result of a load job."""
    path: str
    test_path: str | None
    dataset: engine_data.Dataset


@dataclass(frozen=True)
class Evaluated:
    """The last event of an evaluation job that ran to its end (``stopped``: after a Stop request)."""
    stopped: bool


class MainWindow(QMainWindow):
    """DGKIP Studio's window. Signals let tests and ``--self-test`` wait on the real flow."""
    dataset_loaded = Signal(object)        # engine.data.Dataset
    run_finished = Signal(str)             # "finished" | "stopped" | "cancelled" | "failed" | "refused"
    evaluation_finished = Signal(str)      # "finished" | "stopped" | "cancelled" | "failed"
    error_shown = Signal(object)           # ErrorReport

    def __init__(self, store: SettingsStore | None = None, *, run_fn: RunFn | None = None,
                 load_fn: LoadFn | None = None) -> None:
        super().__init__()
        self.store = store or SettingsStore()
        self._run_fn: RunFn = run_fn or distill.run
        self._load_fn: LoadFn = load_fn or engine_data.load_dataset
        self.dataset: engine_data.Dataset | None = None
        self.dataset_path: str | None = None
        self.test_path: str | None = None
        self.result: DistillResult | None = None
        self.error_dialog: ErrorDialog | None = None
        self._job: Job | None = None
        self._job_kind = ""
        self._job_count = 0
        self._control: RunControl | None = None
        self._run_config: DistillConfig | None = None
        self._run_outcome: str | None = None
        self._stage = ""
        self._last_step: Step | None = None
        self._close_requested = False
        self._panel_page_before_load = 0
        self._loaded: Loaded | None = None
        self._rendered_at = 0.0
        self._snapshot: Snapshot | None = None   # newest snapshot not yet shown
        self.export_info: ExportInfo | None = None     # the export that Evaluate works on
        self._evaluation: EvaluateOptions | None = None  # the running (or last) evaluation
        self._eval_outcome: str | None = None
        self._eval_progress: TransferProgress | None = None
        self._eval_clock: tuple[float, int] | None = None  # (time, epochs done) at the first epoch
        self._eval_error = ""

        self.setWindowTitle(APP_NAME)
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self._make_actions()
        self._make_widgets()
        self._make_menus()
        self._make_status_bar()
        guard_wheel(self)

        self._refresh = QTimer(self, interval=REFRESH_MS)
        self._refresh.timeout.connect(self._drain)

        saved = self.store.config()
        if saved is not None:
            self.settings.set_config(saved)
        self.dataset_panel.show_empty(self.store.recent())
        self._rebuild_recent_menu()
        geometry = self.store.layout("geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1440, 900)
        for name, splitter in self._splitters.items():
            state = self.store.layout(name)
            if state is not None:
                splitter.restoreState(state)
        self._update_actions()

    # ------------------------------------------------------------------ construction
    def _action(self, name: str, text: str, slot: Callable[[], Any], shortcuts: tuple[str | QKeySequence, ...] = (),
                icon: QStyle.StandardPixmap | None = None, tip: str = "") -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcuts:
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        tip = tip or text.replace("…", "").replace("&", "")
        keys = ", ".join(QKeySequence(s).toString(QKeySequence.SequenceFormat.NativeText) for s in shortcuts)
        action.setToolTip(f"{tip} ({keys})" if keys else tip)
        action.triggered.connect(lambda _=False: slot())
        self.addAction(action)
        return action

    def _make_actions(self) -> None:
        sp = QStyle.StandardPixmap
        self.act_open = self._action("open", "&Open file or folder…", self.open_dataset,
                                     (QKeySequence.StandardKey.Open,), sp.SP_DialogOpenButton,
                                     "Open a dataset: a folder, an .npz file, IDX files or CIFAR batches")
        self.act_open_folder = self._action("open_folder", "Open &folder…", self.open_folder, ("Ctrl+Shift+O",),
                                            sp.SP_DirOpenIcon, "Open a dataset folder")
        self.act_sample = self._action("sample", "Use the &sample dataset", lambda: self.load_dataset(SAMPLE))
        self.act_test_folder = self._action("test_folder", "Set &test data folder…",
                                            lambda: self.choose_test_data("folder"))
        self.act_test_file = self._action("test_file", "Set test data file…", lambda: self.choose_test_data("file"))
        self.act_load_settings = self._action("load_settings", "Load settings…", self.load_settings_file)
        self.act_save_settings = self._action("save_settings", "Save settings as…", self.save_settings_file)
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
        self.act_evaluate = self._action("evaluate", "E&valuate…", self.evaluate, ("Ctrl+T",),
                                         sp.SP_FileDialogContentsView,
                                         "Train finite networks on the exported set and test them on the real data")
        self.act_open_export = self._action("open_export", "Evaluate an e&xported set…", self.evaluate_folder,
                                            ("Ctrl+Shift+T",), sp.SP_DirOpenIcon)
        self.act_cluster_job = self._action("cluster_job", "Export a c&luster job…", self.export_cluster_job, (), None,
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
        self.dataset_panel.sample_requested.connect(lambda: self.load_dataset(SAMPLE))
        self.dataset_panel.open_requested.connect(self.open_dataset)
        self.dataset_panel.open_folder_requested.connect(self.open_folder)
        self.dataset_panel.recent_requested.connect(self.load_dataset)
        self.dataset_panel.test_data_requested.connect(self.choose_test_data)
        self.settings = SettingsPanel()
        self.settings.changed.connect(self._settings_changed)
        self.settings.estimate_changed.connect(self._update_actions)
        self.settings.replaced.connect(self._settings_replaced)
        left = QTabWidget()
        left.addTab(self.dataset_panel, "Dataset")
        left.addTab(self.settings, "Settings")
        self.left_tabs = left

        self.run_panel = RunPanel([self.act_run, self.act_pause, self.act_stop, self.act_cancel],
                                  [self.act_export, self.act_evaluate])
        self.plots = LivePlots()
        self.grid = ImageGrid()
        self.results = RunResults()
        self.evaluate_panel = EvaluatePanel([self.act_evaluate, self.act_open_export, self.act_export_transfer])
        self.results_tabs = QTabWidget()
        self.results_tabs.setDocumentMode(True)
        for widget, title in zip((self.results, self.evaluate_panel), RESULT_TABS):
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
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.run_panel)
        right_layout.addWidget(right_split, 1)

        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(right)
        main.setStretchFactor(0, 0)
        main.setStretchFactor(1, 1)
        main.setSizes([400, 1040])
        self.setCentralWidget(main)
        self._splitters = {"main_splitter": main, "right_splitter": right_split, "bottom_splitter": bottom}

    def _make_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.act_open, self.act_open_folder])
        self.recent_menu = file_menu.addMenu("Open &recent")
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
        run_menu.addActions([self.act_evaluate, self.act_open_export])
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
        for path in recent:
            action = self.recent_menu.addAction(display_name(path))
            action.setToolTip(path)
            action.triggered.connect(lambda _=False, p=path: self.load_dataset(p))
        self.recent_menu.setEnabled(bool(recent))

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        """A job (load, run or evaluation) is in progress."""
        return self._job is not None

    @property
    def running(self) -> bool:
        """A distillation or an evaluation is in progress (pause, stop and cancel apply)."""
        return self._job is not None and self._job_kind in ("run", "evaluate")

    def _update_actions(self) -> None:
        running = self.running
        control = self._control
        refusal = self.settings.refusal if self.dataset is not None and not self.busy else None
        self.act_run.setEnabled(not self.busy and self.dataset is not None and self.settings.error is None
                                and refusal is None)
        self.act_run.setToolTip(f"Distil is off. {refusal}: see the alternatives under Settings" if refusal
                                else "Start distilling with the current settings (Ctrl+R, F5)")
        self.run_panel.block(refusal)
        for action in (self.act_open, self.act_open_folder, self.act_sample, self.act_load_settings):
            action.setEnabled(not self.busy)
        for action in (self.act_test_folder, self.act_test_file):
            action.setEnabled(not self.busy and self.dataset is not None)
        stoppable = running and control is not None and not control.stop_requested and not control.cancelled
        self.act_pause.setEnabled(stoppable)
        self.act_pause.setText("&Resume" if control is not None and control.paused else "&Pause")
        self.act_stop.setEnabled(stoppable)
        self.act_cancel.setEnabled(running and control is not None and not control.cancelled)
        self.act_export.setEnabled(self.result is not None and not self.running)
        self.act_evaluate.setEnabled(self.export_info is not None and not self.busy)
        self.act_open_export.setEnabled(not self.busy)
        self.act_cluster_job.setEnabled(not self.busy)
        self.act_export_transfer.setEnabled(self.evaluate_panel.table.rowCount() > 0 and not self.busy)
        self.settings.setEnabled(not self.busy)
        self.recent_menu.setEnabled(not self.busy and bool(self.recent_menu.actions()))

    def _settings_changed(self) -> None:
        config = self.settings.valid_config()
        self.device_label.setText(device_description(config.device if config else "auto"))
        self._update_actions()

    def _settings_replaced(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)

    def _update_memory(self) -> None:
        self.memory_label.setText(memory_description())

    # ------------------------------------------------------------------ jobs
    def _start_job(self, kind: str, job: Callable[[Emit], None], title: str) -> None:
        self._job_count += 1
        self._job_kind = kind
        self._job = Job(self._job_count, job, title=title, latest_only=(Snapshot, TransferProgress), parent=self)
        self._job.failed.connect(self._job_failed)
        self._job.finished.connect(self._job_finished)
        self._job.start()
        self._refresh.start()
        self._update_actions()

    def _drain(self, final: bool = False) -> None:
        """Repaint tick: handle the current job's queued events, then redraw once."""
        if self._job is None:
            return
        handle = {"run": self._handle_run_event, "evaluate": self._handle_evaluate_event}.get(
            self._job_kind, self._handle_load_event)
        for event in self._job.queue.drain():
            handle(event)
        now = time.monotonic()
        if final or now - self._rendered_at >= VIEW_REFRESH_S:
            self._rendered_at = now
            self._render()

    def _render(self) -> None:
        """Redraw what the drained events changed: curves, the newest snapshot, the progress line."""
        if self._job_kind == "evaluate":
            self._render_evaluation()
            return
        self.plots.refresh()
        if self._snapshot is not None:
            snap, self._snapshot = self._snapshot, None
            self.grid.show_images(snap.images, snap.labels, f"step {snap.step}", snap.step)
        control = self._control
        if self._last_step is not None and self._stage == "distill" and control is not None:
            paused = " · paused" if control.paused else ""
            stopping = " · stopping after this step…" if control.stop_requested else ""
            self.run_panel.step(self._last_step.step, self._last_step.total, paused + stopping)

    def _job_failed(self, job_id: int, report: ErrorReport) -> None:
        if self._job is None or job_id != self._job.id:
            return  # stale
        if self._job_kind == "load":
            self.dataset_panel.show_error(report.message, self._panel_page_before_load)
            if isinstance(report.exception, (engine_data.DatasetError, OSError)):   # bad input: explained inline
                self.statusBar().showMessage("The dataset could not be loaded; see the message in the dataset panel.")
                return
        elif self._job_kind == "evaluate":
            self._eval_outcome = "failed"
            self._eval_error = report.message
        else:
            if isinstance(report.exception, ResourceError):       # refused before it started: not a failure
                self._run_outcome = "refused"
                self.settings.update_estimate()
                self.left_tabs.setCurrentIndex(1)
                return
            self._run_outcome = "failed"
            if isinstance(report.exception, ConfigError):
                self.settings.show_error(report.exception)
                self.left_tabs.setCurrentIndex(1)
        self.show_error(report)

    def _job_finished(self, job_id: int) -> None:
        if self._job is None or job_id != self._job.id:
            return
        self._drain(final=True)
        job, kind = self._job, self._job_kind
        self._job, self._job_kind = None, ""
        job.deleteLater()
        self._control = None
        self._refresh.stop()
        if kind == "run":
            self._run_ended()
        elif kind == "evaluate":
            self._evaluation_ended()
        elif self._loaded is not None:
            loaded, self._loaded = self._loaded, None
            self._dataset_ready(loaded)
        elif self.dataset_panel.page() == 1:  # cancelled load (window closing)
            self.dataset_panel.show_empty(self.store.recent())
        self._update_actions()
        if self._close_requested:
            self.close()

    # ------------------------------------------------------------------ datasets
    def open_dataset(self) -> None:
        """File › Open (Ctrl+O): choose a dataset file or folder and load it."""
        path = open_dialog.choose_dataset(self, "Open a dataset (file or folder)", self.store.folder(DATASETS))
        if path:
            self.load_dataset(path)

    def open_folder(self) -> None:
        """File › Open folder (Ctrl+Shift+O): the platform's folder chooser."""
        path = QFileDialog.getExistingDirectory(self, "Open a dataset folder", self.store.folder(DATASETS))
        if path:
            self.load_dataset(path)

    def choose_test_data(self, kind: str) -> None:
        """Reload the dataset with a separate test split from a folder or a file (``kind``)."""
        if self.dataset_path is None:
            return
        if kind == "folder":
            path = QFileDialog.getExistingDirectory(self, "Choose the test data folder", self.store.folder(DATASETS))
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose the test data file", self.store.folder(DATASETS),
                                                  DATASET_FILES)
        if path:
            self.load_dataset(self.dataset_path, test_path=path)

    def load_dataset(self, path: str | Path, test_path: str | Path | None = None) -> bool:
        """Load a dataset on a worker thread; ``dataset_loaded`` fires when done. False when busy."""
        if self.busy:
            self.statusBar().showMessage("Wait until the current job ends (or stop it) before loading.", 5000)
            return False
        path = str(path)
        test = str(test_path) if test_path is not None else None
        config = self.settings.valid_config() or DistillConfig()
        load_fn = self._load_fn
        control = RunControl()
        self._control = control
        self._panel_page_before_load = self.dataset_panel.page()
        self.dataset_panel.show_loading(path)
        self.left_tabs.setCurrentIndex(0)
        self.statusBar().showMessage(f"Loading {display_name(path)}…")

        def job(emit: Emit) -> None:
            def progress(done: int, total: int) -> None:
                control.checkpoint()
                emit(LoadProgress(done, total))
            dataset = load_fn(path, test_path=test, holdout_fraction=config.holdout_fraction, seed=config.seed,
                              progress=progress, max_bytes=int(config.memory_budget_gb * 2**30))
            warm_up()
            emit(Loaded(path, test, dataset))

        self._start_job("load", job, "Could not load the dataset")
        return True

    def _handle_load_event(self, event: Any) -> None:
        if isinstance(event, LoadProgress):
            self.dataset_panel.set_progress(event.done, event.total)
        elif isinstance(event, Loaded):
            self._loaded = event

    def _dataset_ready(self, loaded: Loaded) -> None:
        dataset = loaded.dataset
        self.dataset, self.dataset_path, self.test_path = dataset, loaded.path, loaded.test_path
        self.result = None
        self.dataset_panel.show_dataset(dataset)
        self.settings.set_dataset(list(dataset.classes), dataset.report)
        self.grid.reset(list(dataset.classes))
        self.results.clear()
        self.plots.reset()
        self.run_panel.idle(f"{dataset.name} loaded: press Distil (F5) to start.")
        recent = self.store.add_recent(loaded.path)
        self._rebuild_recent_menu(recent)
        self.dataset_panel.set_recent(recent)
        if loaded.path != SAMPLE:
            self.store.set_folder(DATASETS, Path(loaded.path).parent)
        self.setWindowTitle(f"{dataset.name} — {APP_NAME}")
        report = dataset.report
        self.statusBar().showMessage(f"Loaded {dataset.name}: {len(dataset.classes)} classes, "
                                     f"{sum(report.train_counts):,} train and {sum(report.test_counts):,} test "
                                     "images", 8000)
        log.info("loaded dataset %s", loaded.path)
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
        self.load_dataset(path)

    # ------------------------------------------------------------------ runs
    def _with_data(self, config: DistillConfig) -> DistillConfig:
        """``config`` naming the loaded dataset and test split (what a run, a job or a saved file uses)."""
        return config.replace(data=self.dataset_path or config.data, test_data=self.test_path)

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
        if self.busy or self.dataset is None:
            return False
        config = self._form_config()
        if config is None:
            return False
        self.settings.update_estimate(timed=False)   # the estimate of exactly these settings, not a pending one
        if self.settings.refusal is not None:
            self.left_tabs.setCurrentIndex(1)
            self.statusBar().showMessage(f"{self.settings.refusal}: pick an alternative under Settings.", 8000)
            return False
        self.settings.time_estimator.cancel()   # its step measurement must not share the CPU with the run
        config = self._with_data(config)
        self.store.set_config(config)
        control = RunControl()
        self._control, self._run_config = control, config
        self._run_outcome, self._stage, self._last_step, self._snapshot = None, "", None, None
        self.result = None
        self.plots.reset(config.steps)
        self.results.clear()
        classes = config.classes or list(self.dataset.classes)
        self.grid.reset(classes)
        self.run_panel.meter.clear()
        self.run_panel.busy("Starting…")
        run_fn, dataset = self._run_fn, self.dataset

        def job(emit: Emit) -> None:
            for event in run_fn(config, control, dataset):
                emit(event)

        log.info("run started: %s", config.to_json().replace("\n", " "))
        self._start_job("run", job, "The distillation failed")
        return True

    def _handle_run_event(self, event: Any) -> None:
        if isinstance(event, Step):
            self.plots.add_step(event)
            self.run_panel.meter.add(event.step, event.elapsed)
            self._last_step = event
        elif isinstance(event, Snapshot):
            if self._run_outcome is None:     # coalesced snapshots drain after Done; the result wins
                self._snapshot = event
        elif isinstance(event, Evaluation):
            self.plots.add_evaluation(event)
        elif isinstance(event, TeacherProgress):
            self.plots.add_teacher(event)
            self.run_panel.teacher(event.iteration, self._run_config.teacher_max_iter, event.rel_gap)
        elif isinstance(event, Stage):
            self._stage = event.name
            if event.name != "distill":
                self.run_panel.busy(event.message or STAGE_TEXT.get(event.name, event.name))
        elif isinstance(event, Progress):
            eta = event.seconds * (event.total - event.done) / event.done if event.done else 0.0
            self.run_panel.progress(event.done, event.total,
                                    f"{PROGRESS_TEXT.get(event.stage, event.stage)}: {event.done:,} of {event.total:,} "
                                    f"· ETA {format_duration(eta)}")
        elif isinstance(event, TeacherDone):
            kind = (f"Nyström teacher ({event.centres:,} centres)" if event.kind == "nystrom"
                    else "Exact teacher")
            text = (f"{kind} solved: relative gap {event.rel_gap:.2e} after {event.iterations} iterations "
                    f"({event.seconds:.1f} s, {event.n:,} training images)")
            self.run_panel.info.setToolTip(f"{text}.\nWhy: {event.reason}" if event.reason else text)
            self.statusBar().showMessage(text, 10000)
        elif isinstance(event, Done):
            self._run_done(event)

    def _run_done(self, done: Done) -> None:
        self._run_outcome = done.reason
        self.result = done.result
        self.results.show_metrics(done.metrics, self._run_config)
        if done.result is not None:
            self._snapshot = None
            self.grid.show_images(done.result.pixels(), done.result.labels, f"final ({done.reason})",
                                  self._last_step.step if self._last_step else None)

    def _run_ended(self) -> None:
        outcome = self._run_outcome or "cancelled"
        self._run_outcome = outcome
        self.plots.finish()
        step = f" after {self._last_step.step:,} steps" if self._last_step else ""
        rate = (self.result.metrics.get("steps_per_second") if self.result is not None
                else self.run_panel.steps_per_second())
        speed = f" ({rate:.1f} steps/s)" if rate else ""
        text = {"finished": f"Finished{step}{speed}.",
                "stopped": f"Stopped{step}; the result so far is kept.",
                "cancelled": "Cancelled; nothing was kept.",
                "failed": "The run failed; see the error details.",
                "refused": "Not started: the run would not fit in memory (see Settings)."}.get(outcome, outcome)
        self.run_panel.idle(text)
        if self.result is not None:
            text += " Export the distilled set with Export… (Ctrl+E)."
        if self._last_step is not None and outcome in ("finished", "stopped"):
            self.run_panel.bar.setRange(0, self._last_step.total)
            self.run_panel.bar.setValue(self._last_step.step)
            self.run_panel.bar.setFormat("%v / %m")
        self.statusBar().showMessage(text, 10000)
        log.info("run ended: %s%s", outcome, step)
        self.run_finished.emit(outcome)

    def toggle_pause(self) -> None:
        control = self._control
        if not self.running or control is None:
            return
        if control.paused:
            control.resume()
            self.statusBar().showMessage("Resumed.", 3000)
        else:
            control.pause()
            self.statusBar().showMessage("Paused: press Space or Resume to continue.")
        self._update_actions()
        self._drain(final=True)

    def stop_run(self) -> None:
        """Finish the current step and keep the result (export stays possible)."""
        if self.running and self._control is not None:
            self._control.stop()
            what = "seed" if self._job_kind == "evaluate" else "step"
            self.statusBar().showMessage(f"Stopping after the current {what}…")
            self._update_actions()

    def cancel_run(self) -> None:
        """Abandon the run (also during the teacher solve); nothing is kept."""
        if self.running and self._control is not None:
            self._control.cancel()
            self.statusBar().showMessage("Cancelling…")
            self._update_actions()

    # ------------------------------------------------------------------ export
    def suggested_export_name(self) -> str:
        config = self._run_config or DistillConfig()
        name = self.dataset.name if self.dataset is not None else "dataset"
        return re.sub(r"[^\w.-]+", "-", f"{name}-{config.mode}-{config.loss}-ipc{config.ipc}").strip("-")

    def export_result(self, target: str | Path | None = None) -> Path | None:
        """Export the distilled set to ``target`` (a folder chooser asks when None). A new or empty folder
        receives the files; an earlier export is replaced only after asking (default No); another
        non-empty folder is never replaced: a new subfolder inside it is offered instead (default No); a
        file is refused. Write failures are explained in one sentence. None when nothing was written."""
        if self.result is None or self.running:
            return None
        if target is None:
            chosen = QFileDialog.getExistingDirectory(self, "Export the distilled set: choose an empty folder or "
                                                      "create one", self.store.folder(EXPORTS))
            if not chosen:
                return None
            target = chosen
        decided = self._export_target(Path(target).absolute())
        if decided is None:
            self.statusBar().showMessage("Export cancelled; nothing was written.", 5000)
            return None
        target, overwrite = decided
        try:
            path = export.export_distilled(self.result, target, overwrite=overwrite)
        except OSError as exc:
            log.warning("export to %s failed: %s", target, exc)
            message = write_error_message(exc, target, "the distilled set")
            # the result is kept: a full disk or a folder that turned read-only must not cost the run
            if self.confirm("Save the distilled set elsewhere?",
                            f"{message}\n\nThe distilled set is kept. Choose another folder?"):
                return self.export_result()
            self.show_error(ErrorReport.from_exception(exc, "Export failed", message))
            return None
        except Exception as exc:  # noqa: BLE001 - surfaced to the user
            self.show_error(ErrorReport.from_exception(exc, "Export failed"))
            return None
        self.store.set_folder(EXPORTS, Path(path).parent)
        self.open_export(path, show=False)
        self.statusBar().showMessage(f"Exported the distilled set to {path}; Evaluate (Ctrl+T) tests it on "
                                     "finite networks.", 10000)
        log.info("exported to %s", path)
        return Path(path)

    def _export_target(self, target: Path) -> tuple[Path, bool] | None:
        """(folder to write, whether it replaces an earlier export) after asking where needed; None when
        the user said No or the target is refused."""
        kind = classify(target)
        if kind in (NEW, EMPTY):
            return target, False
        if kind == EXPORT:
            replace = self.confirm("Replace the earlier export?",
                                   f"{target} holds a distilled set exported earlier. Replace it with this one? "
                                   "Its files, and any evaluation results saved in it, are deleted.")
            return (target, True) if replace else None
        if kind == OTHER:
            inside = free_subfolder(target, self.suggested_export_name())
            nest = self.confirm("Export into a new folder inside it?",
                                f"{target} is not empty and is not an earlier export, so it is never replaced. "
                                f"Export into a new folder inside it, {inside.name}?")
            return (inside, False) if nest else None
        self.show_error(ErrorReport.from_exception(
            FileExistsError(f"{target} is a file, not a folder. Choose or create a folder for the export."),
            "Export refused"))
        return None

    def export_plots_png(self, path: str | Path | None = None) -> Path | None:
        return self._export_file(self.plots.export_png, "plots", path, "curves.png", "PNG image (*.png)")

    def export_curves_csv(self, path: str | Path | None = None) -> Path | None:
        return self._export_file(self.plots.export_csv, "curves", path, "curves.csv", "CSV table (*.csv)")

    def _export_file(self, write: Callable[[str | Path], Path], what: str, path: str | Path | None,
                     default: str | Path, file_filter: str) -> Path | None:
        """``write(path)`` to ``path``, asking for it (``default`` suggested, relative to the exports folder)
        when None; errors go to the error dialog, success to the status bar. The file's folder becomes
        the remembered exports folder."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, f"Export the {what}",
                                                  str(Path(self.store.folder(EXPORTS)) / default), file_filter)
        if not path:
            return None
        try:
            saved = write(path)
        except OSError as exc:
            self.show_error(ErrorReport.from_exception(exc, f"Could not export the {what}",
                                                       write_error_message(exc, path, f"the {what}")))
            return None
        self.store.set_folder(EXPORTS, Path(saved).parent)
        self.statusBar().showMessage(f"Saved the {what} to {saved}", 8000)
        return saved

    # ------------------------------------------------------------------ cluster jobs
    def export_cluster_job(self, folder: str | Path | None = None, options: JobOptions | None = None) -> Path | None:
        """Write a cluster job (:func:`engine.cluster_job.write_cluster_job`) of the current settings, the
        loaded dataset and test split included; the dialog asks for the folder and the layout when
        ``folder`` is None. Settings torchrun would refuse, and a non-empty folder, get the error dialog.
        The path of the job folder, or None when nothing was written."""
        if self.busy:
            return None
        config = self._form_config()
        if config is None:
            return None
        config = self._with_data(config)
        if folder is None:
            dialog = ClusterJobDialog(str(free_subfolder(Path(self.store.folder(EXPORTS)), "cluster-job")),
                                      options, parent=self)
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return None
            folder, options = dialog.choice()
        try:
            job = write_cluster_job(config, Path(folder).absolute(), options or JobOptions())
        except (ConfigError, FileExistsError) as exc:
            self.show_error(ErrorReport.from_exception(exc, "Cluster job refused"))
            return None
        except OSError as exc:
            self.show_error(ErrorReport.from_exception(exc, "Could not write the cluster job",
                                                       write_error_message(exc, folder, "the cluster job")))
            return None
        self.store.set_folder(EXPORTS, job.folder.parent)
        notes = "".join(f"\n\n{n}" for n in job.notes)
        self.inform("Cluster job written",
                    f"The cluster job is in {job.folder}.\n\nOn the other machine run ./run.sh there (or sbatch "
                    f"job.slurm); the export appears in {job.folder / EXPORT_NAME}. Open it here with "
                    f"Run › Evaluate an exported set… like any other export.{notes}")
        self.statusBar().showMessage(f"Wrote the cluster job to {job.folder}", 10000)
        log.info("wrote a cluster job to %s", job.folder)
        return job.folder

    # ------------------------------------------------------------------ transfer evaluation
    def open_export(self, path: str | Path, show: bool = True) -> bool:
        """Make ``path`` the export that Evaluate works on and show its saved results (``show``: switch to
        the Transfer tab). A folder that is not an export gets the error dialog; False then."""
        try:
            info = ExportInfo.read(path)
        except (engine_data.DatasetError, OSError) as exc:
            self.show_error(ErrorReport.from_exception(exc, "Not a distilled-set export"))
            return False
        self.export_info = info
        self.evaluate_panel.show_export(info)
        if show:
            self.results_tabs.setCurrentWidget(self.evaluate_panel)
        self._update_actions()
        return True

    def evaluate_folder(self) -> None:
        """Choose an export folder, show its saved results, then ask how to evaluate it."""
        if self.busy:
            return
        path = QFileDialog.getExistingDirectory(self, "Evaluate an exported distilled set",
                                                  self.store.folder(EXPORTS))
        if path and self.open_export(path):
            self.evaluate()

    def evaluation_defaults(self) -> EvaluateOptions:
        """The dialog's starting point for the open export: its run's dataset, the last choices, and
        quick training on a CPU (the full recipe on a GPU)."""
        info = self.export_info
        cpu = self._evaluation_device_and_reason()[0] == "cpu"
        return default_options(info.data if info else SAMPLE, info.test_data if info else None, self._evaluation,
                               QUICK_EPOCHS if cpu else None)

    def _evaluation_device_and_reason(self) -> tuple[str, str]:
        """(device type, why it differs from the form's choice or ""): the settings form's device, or the
        CPU, said plainly, when the form names one this machine lacks (a distillation run would refuse)."""
        config = self.settings.valid_config()
        try:
            return resolve_device(config.device if config else "auto").type, ""
        except RuntimeError:
            return "cpu", f"the settings ask for {config.device}, which this machine does not have"

    def evaluate(self, options: EvaluateOptions | None = None) -> bool:
        """Evaluate the open export on a worker thread: train ``options.networks`` from scratch on it and
        test them on the real test set. Without ``options`` the options dialog asks first.
        ``evaluation_finished`` fires at the end. False when nothing was started."""
        info = self.export_info
        if self.busy or info is None:
            return False
        if options is None:
            dialog = EvaluateDialog(info.path, self.evaluation_defaults(), start_dir=self.store.folder(DATASETS),
                                    dataset_filter=DATASET_FILES, parent=self)
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return False
            options = dialog.options()
        device, reason = self._evaluation_device_and_reason()
        control = RunControl()
        self._control, self._evaluation = control, options
        self._eval_outcome, self._eval_progress, self._eval_clock, self._eval_error = None, None, None, ""
        self.evaluate_panel.table.begin(options)
        self.evaluate_panel.set_note(f"Evaluating on {display_name(options.data)} ({device}"
                                     + (f": {reason}" if reason else "") + ")…")
        self.results_tabs.setCurrentWidget(self.evaluate_panel)
        self.run_panel.busy(f"Loading {display_name(options.data)} for the evaluation…")
        path = str(info.path)

        def job(emit: Emit) -> None:
            warm_up()
            for event in evaluate_export(path, options.data, test_path=options.test_data, networks=options.networks,
                                         seeds=options.seeds, epochs=options.epochs, device=device, control=control):
                emit(event)
            emit(Evaluated(control.stop_requested))

        log.info("evaluation started: %s on %s, %s", path, device, options)
        self._start_job("evaluate", job, "The evaluation failed")
        return True

    def _handle_evaluate_event(self, event: Any) -> None:
        if isinstance(event, TransferProgress):
            self._eval_progress = event
        elif isinstance(event, TransferScore):
            self.evaluate_panel.table.add_score(event)
        elif isinstance(event, TransferSummary):
            self.evaluate_panel.table.add_summary(event)
        elif isinstance(event, Evaluated):
            self._eval_outcome = "stopped" if event.stopped else "finished"

    def _render_evaluation(self) -> None:
        """Progress bar over all epochs of all networks and seeds, with the current network, seed and ETA."""
        event, options, control = self._eval_progress, self._evaluation, self._control
        if event is None or options is None:
            return
        done, total = options.epochs_done(event.network, event.seed, event.epoch), options.total_epochs()
        now = time.monotonic()
        if self._eval_clock is None:
            self._eval_clock = (now, done)
        start, done_then = self._eval_clock
        eta = (total - done) * (now - start) / (done - done_then) if done > done_then else None
        text = progress_text(event, options.seeds, eta)
        if control is not None and control.paused:
            text += " · paused"
        if control is not None and control.stop_requested:
            text += " · stopping after this seed…"
        self.run_panel.progress(done, total, text)

    def _evaluation_ended(self) -> None:
        """Show what the manifest now holds (each network is saved when its seeds finish, so even a
        cancelled or failed evaluation may have saved some) and say how it ended."""
        outcome = self._eval_outcome or "cancelled"
        if self.export_info is not None:
            self.open_export(self.export_info.path, show=False)
        text = {"finished": "Evaluation finished; saved in manifest.json.",
                "stopped": "Evaluation stopped; the finished seeds are saved in manifest.json.",
                "cancelled": "Evaluation cancelled; networks not finished were not saved.",
                "failed": f"The evaluation failed: {self._eval_error}"}[outcome]
        scores = summary_text(self.evaluate_panel.table.accuracies()) if outcome in ("finished", "stopped") else ""
        self.run_panel.idle(f"Evaluated: {scores}" if scores else text)
        self.evaluate_panel.set_note(text)
        self.statusBar().showMessage(text, 10000)
        log.info("evaluation ended: %s", outcome)
        self.evaluation_finished.emit(outcome)

    def export_transfer_csv(self, path: str | Path | None = None) -> Path | None:
        """Save the transfer table as CSV (default location: the export folder)."""
        default = self.export_info.path / "transfer.csv" if self.export_info is not None else "transfer.csv"
        return self._export_file(self.evaluate_panel.table.write_csv, "transfer table", path, default,
                                 "CSV table (*.csv)")

    # ------------------------------------------------------------------ settings files
    def load_settings_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load run settings", self.store.folder(EXPORTS),
                                              SETTINGS_FILES)
        if not path:
            return
        try:
            config = DistillConfig.load(path).validate()
        except ConfigError as exc:
            self.show_error(ErrorReport.from_exception(exc, "Could not load the settings"))
            return
        self.settings.set_config(config)
        self.statusBar().showMessage(f"Loaded settings from {path}", 5000)

    def save_settings_file(self) -> None:
        config = self.settings.valid_config()
        if config is None:
            self.statusBar().showMessage("Fix the highlighted setting before saving.", 5000)
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save run settings",
                                              str(Path(self.store.folder(EXPORTS)) / "run.json"), SETTINGS_FILES)
        if not path:
            return
        config = self._with_data(config)
        try:
            config.save(path)
        except OSError as exc:
            self.show_error(ErrorReport.from_exception(exc, "Could not save the settings",
                                                       write_error_message(exc, path, "the settings")))
            return
        self.store.set_folder(EXPORTS, Path(path).parent)
        self.statusBar().showMessage(f"Saved settings to {path} (run headless with: python -m engine {path})", 8000)

    # ------------------------------------------------------------------ dialogs
    def confirm(self, title: str, text: str) -> bool:
        """Ask a yes/no question (tests monkeypatch ``QMessageBox.question``)."""
        answer = QMessageBox.question(self, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

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
        """Cancel any job and run the event loop until its thread has ended; True when it has."""
        if self._control is not None:
            self._control.cancel()
        deadline = time.monotonic() + timeout_s
        while self._job is not None and time.monotonic() < deadline:
            self._job.wait(20)
            QApplication.processEvents()
        return self._job is None

    def closeEvent(self, event: QCloseEvent) -> None:
        """During a job: ask, cancel it, and close once its thread has finished (never left behind)."""
        if self._job is not None:
            if not self._close_requested:
                what = "An evaluation" if self._job_kind == "evaluate" else "A distillation"
                if self.running and not self.confirm("Quit during a run?", f"{what} is running. Stop it and quit?"):
                    event.ignore()
                    return
                self._close_requested = True
                if self._control is not None:
                    self._control.cancel()
                self.statusBar().showMessage("Stopping before closing…")
            event.ignore()
            return
        self.settings.time_estimator.cancel(wait_s=1.0)
        self._save_state()
        self._refresh.stop()
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
            self.store.set_config(self._with_data(config))
        self.store.sync()


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
