"""Loading a dataset (a folder or a file, optionally with a separate test split) on a worker thread,
with the dataset panel showing progress, the dataset with its problems report, or why it failed."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog

from engine import data as engine_data
from engine.config import DistillConfig
from engine.control import RunControl
from dgkip_gui import open_dialog
from dgkip_gui.errors import ErrorReport
from dgkip_gui.open_dialog import DATASET_FILES
from dgkip_gui.sessions.base import JobHost, Session, Shell
from dgkip_gui.settings_store import DATASETS, SAMPLE, SettingsStore
from dgkip_gui.warmup import warm_up
from dgkip_gui.widgets.dataset_panel import DatasetPanel, display_name
from dgkip_gui.worker import Emit

log = logging.getLogger(__name__)

LoadFn = Callable[..., Any]      # engine.data.load_dataset(path, *, test_path, ..., progress)


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


class LoadSession(Session):
    """The loaded dataset and the job that loads the next one. ``loaded(dataset)`` fires when a load
    succeeded (the panel, the recent list and the status bar already updated)."""
    loaded = Signal(object)          # engine.data.Dataset

    def __init__(self, host: JobHost, shell: Shell, *, panel: DatasetPanel, store: SettingsStore,
                 show_panel: Callable[[], None], config: Callable[[], DistillConfig | None],
                 load_fn: LoadFn | None = None, may_replace: Callable[[str], bool] = lambda doing: True) -> None:
        super().__init__(host, shell)
        self.panel, self.store, self._show_panel, self._config = panel, store, show_panel, config
        self._may_replace = may_replace      # asked before a load that would replace the run's result
        self.load_fn: LoadFn = load_fn or engine_data.load_dataset
        self.dataset: engine_data.Dataset | None = None
        self.path: str | None = None
        self.test_path: str | None = None
        self._page_before = 0
        self._loaded: Loaded | None = None

    def with_data(self, config: DistillConfig) -> DistillConfig:
        """``config`` naming the loaded dataset and test split (what a run, a job or a saved file uses)."""
        return config.replace(data=self.path or config.data, test_data=self.test_path)

    # -------------------------------------------------------------- choosing
    def open_file(self) -> None:
        """File › Open (Ctrl+O): choose a dataset file or folder and load it."""
        path = open_dialog.choose_dataset(self.shell.window, "Open a dataset (file or folder)",
                                          self.store.folder(DATASETS))
        if path:
            self.load(path)

    def open_folder(self) -> None:
        """File › Open folder (Ctrl+Shift+O): the platform's folder chooser."""
        path = QFileDialog.getExistingDirectory(self.shell.window, "Open a dataset folder", self.store.folder(DATASETS))
        if path:
            self.load(path)

    def choose_test_data(self, kind: str) -> None:
        """Reload the dataset with a separate test split from a folder or a file (``kind``)."""
        if self.path is None:
            return
        parent, start = self.shell.window, self.store.folder(DATASETS)
        if kind == "folder":
            path = QFileDialog.getExistingDirectory(parent, "Choose the test data folder", start)
        else:
            path, _ = QFileDialog.getOpenFileName(parent, "Choose the test data file", start, DATASET_FILES)
        if path:
            self.load(self.path, test_path=path)

    # -------------------------------------------------------------- the job
    def load(self, path: str | Path, test_path: str | Path | None = None) -> bool:
        """Load a dataset on a worker thread; ``loaded`` fires when done. False when a job is busy or
        the user keeps the run's unexported result (``may_replace``; a load that fails keeps it too)."""
        if self.host.busy:
            self.shell.status("Wait until the current job ends (or stop it) before loading.", 5000)
            return False
        if not self._may_replace("Reloading the dataset with this test split" if test_path is not None
                                 else "Opening another dataset"):
            return False
        path = str(path)
        test = str(test_path) if test_path is not None else None
        config = self._config() or DistillConfig()
        load_fn = self.load_fn
        control = self.control = RunControl()
        self._loaded = None
        self._page_before = self.panel.page()
        self.panel.show_loading(path)
        self._show_panel()
        self.shell.status(f"Loading {display_name(path)}…")

        def job(emit: Emit) -> None:
            def progress(done: int, total: int) -> None:
                control.checkpoint()
                emit(LoadProgress(done, total))
            dataset = load_fn(path, test_path=test, holdout_fraction=config.holdout_fraction, seed=config.seed,
                              progress=progress, max_bytes=int(config.memory_budget_gb * 2**30))
            warm_up()
            emit(Loaded(path, test, dataset))

        self.start_job(job, "Could not load the dataset")
        return True

    def on_partial_result(self, event: Any) -> None:
        if isinstance(event, LoadProgress):
            self.panel.set_progress(event.done, event.total)
        elif isinstance(event, Loaded):
            self._loaded = event

    def on_exception(self, report: ErrorReport) -> None:
        self.panel.show_error(report.message, self._page_before)
        if isinstance(report.exception, (engine_data.DatasetError, OSError)):   # bad input: explained inline
            self.shell.status("The dataset could not be loaded; see the message in the dataset panel.")
            return
        self.shell.show_error(report)

    def on_done(self) -> None:
        if self._loaded is not None:
            loaded, self._loaded = self._loaded, None
            self._ready(loaded)
        elif self.panel.page() == 1:  # cancelled load (window closing)
            self.panel.show_empty(self.store.recent())

    def _ready(self, loaded: Loaded) -> None:
        dataset = loaded.dataset
        self.dataset, self.path, self.test_path = dataset, loaded.path, loaded.test_path
        self.panel.show_dataset(dataset)
        self.panel.set_recent(self.store.add_recent(loaded.path))
        if loaded.path != SAMPLE:
            self.store.set_folder(DATASETS, Path(loaded.path).parent)
        report = dataset.report
        self.shell.status(f"Loaded {dataset.name}: {len(dataset.classes)} classes, "
                          f"{sum(report.train_counts):,} train and {sum(report.test_counts):,} test images", 8000)
        log.info("loaded dataset %s", loaded.path)
        self.loaded.emit(dataset)
