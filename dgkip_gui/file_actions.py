"""Menu work that reads or writes one file or folder and needs no background job: run settings files,
saved plots and tables, cluster jobs. Errors go to the error dialog and success to the status bar; the
folder written to becomes the remembered exports folder."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QDialog, QFileDialog

from engine.cluster_job import EXPORT_NAME, JobOptions, write_cluster_job
from engine.config import ConfigError, DistillConfig, check_settings_target
from dgkip_gui.cluster_job_dialog import ClusterJobDialog
from dgkip_gui.errors import ErrorReport
from dgkip_gui.export_target import free_subfolder, write_error_message
from dgkip_gui.sessions.base import JobHost, Shell
from dgkip_gui.widgets.settings_panel import SettingsPanel
from dgkip_gui.settings_store import EXPORTS, SettingsStore

log = logging.getLogger(__name__)

SETTINGS_FILES = "Run settings or an export's manifest (*.json)"


class FileActions:
    """``form_config()``: the form's settings or None after showing what to fix; ``with_data(config)``:
    the config naming the loaded dataset; ``inform(title, text)``: a message with an OK button."""

    def __init__(self, shell: Shell, host: JobHost, store: SettingsStore, settings: SettingsPanel, *,
                 form_config: Callable[[], DistillConfig | None],
                 with_data: Callable[[DistillConfig], DistillConfig],
                 inform: Callable[[str, str], None]) -> None:
        self.shell, self.host, self.store, self.settings = shell, host, store, settings
        self._form_config, self._with_data, self._inform = form_config, with_data, inform

    def save_file(self, write: Callable[[str | Path], Path], what: str, path: str | Path | None,
                  default: str | Path, file_filter: str) -> Path | None:
        """``write(path)`` to ``path``, asking for it (``default`` suggested, relative to the exports folder)
        when None. The path written, or None."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self.shell.window, f"Export the {what}",
                                                  str(Path(self.store.folder(EXPORTS)) / default), file_filter)
        if not path:
            return None
        try:
            saved = write(path)
        except OSError as exc:
            self.shell.show_error(ErrorReport.from_exception(exc, f"Could not export the {what}",
                                                             write_error_message(exc, path, f"the {what}")))
            return None
        self.store.set_folder(EXPORTS, Path(saved).parent)
        self.shell.status(f"Saved the {what} to {saved}", 8000)
        return saved

    # -------------------------------------------------------------- settings files
    def load_settings(self) -> None:
        """File › Load settings: a settings JSON (Save settings as…, --save-config) or an export's
        manifest.json (the settings of the run it holds) into the form."""
        path, _ = QFileDialog.getOpenFileName(self.shell.window, "Load run settings", self.store.folder(EXPORTS),
                                              SETTINGS_FILES)
        if not path:
            return
        try:
            config = DistillConfig.load(path).validate()
        except ConfigError as exc:
            reason = str(exc) if exc.field == "config" else f"{path}: {exc}"    # load names the file in the former
            self.shell.show_error(ErrorReport.from_exception(
                exc, "Could not load the settings", f"{reason} — choose a file saved with Save settings as… "
                "or an export's manifest.json"))
            return
        self.settings.apply_loaded(config, Path(path).name)        # highlighted, and undoable
        self.shell.status(f"Loaded settings from {path}", 5000)

    def save_settings(self) -> None:
        config = self.settings.valid_config()
        if config is None:
            self.shell.status("Fix the highlighted setting before saving.", 5000)
            return
        path, _ = QFileDialog.getSaveFileName(self.shell.window, "Save run settings",
                                              str(Path(self.store.folder(EXPORTS)) / "run.json"),
                                              "Run settings (*.json)")
        if not path:
            return
        try:
            check_settings_target(path)                  # never over a dataset, an export's manifest, …
        except ConfigError as exc:
            self.shell.show_error(ErrorReport.from_exception(exc, "Settings not saved", exc.reason))
            return
        config = self._with_data(config)
        try:
            config.save(path)
        except OSError as exc:
            self.shell.show_error(ErrorReport.from_exception(exc, "Could not save the settings",
                                                             write_error_message(exc, path, "the settings")))
            return
        self.store.set_folder(EXPORTS, Path(path).parent)
        self.shell.status(f"Saved settings to {path} (run headless with: python -m engine {path})", 8000)

    # -------------------------------------------------------------- cluster jobs
    def cluster_job(self, folder: str | Path | None = None, options: JobOptions | None = None) -> Path | None:
        """Write a cluster job (:func:`engine.cluster_job.write_cluster_job`) of the current settings, the
        loaded dataset and test split included; the dialog asks for the folder and the layout when
        ``folder`` is None. Settings torchrun would refuse, and a non-empty folder, get the error dialog.
        The path of the job folder, or None when nothing was written."""
        if self.host.busy:
            return None
        config = self._form_config()
        if config is None:
            return None
        config = self._with_data(config)
        if folder is None:
            dialog = ClusterJobDialog(str(free_subfolder(Path(self.store.folder(EXPORTS)), "cluster-job")),
                                      options, parent=self.shell.window)
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return None
            folder, options = dialog.choice()
        try:
            job = write_cluster_job(config, Path(folder).absolute(), options or JobOptions())
        except (ConfigError, FileExistsError) as exc:
            self.shell.show_error(ErrorReport.from_exception(exc, "Cluster job refused"))
            return None
        except OSError as exc:
            self.shell.show_error(ErrorReport.from_exception(exc, "Could not write the cluster job",
                                                             write_error_message(exc, folder, "the cluster job")))
            return None
        self.store.set_folder(EXPORTS, job.folder.parent)
        notes = "".join(f"\n\n{n}" for n in job.notes)
        self._inform("Cluster job written",
                     f"The cluster job is in {job.folder}.\n\nOn the other machine run ./run.sh there (or sbatch "
                     f"job.slurm); the export appears in {job.folder / EXPORT_NAME}. Open it here with "
                     f"Run › Transfer an exported set… like any other export.{notes}")
        self.shell.status(f"Wrote the cluster job to {job.folder}", 10000)
        log.info("wrote a cluster job to %s", job.folder)
        return job.folder
