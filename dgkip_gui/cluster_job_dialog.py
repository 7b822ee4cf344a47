"""Run › Export a cluster job…: how many processes on how many machines, and the (new) job folder.

The job itself is written by :func:`engine.cluster_job.write_cluster_job` from the current settings.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from engine.cluster_job import JobOptions
from dgkip_gui.widgets.wheel_guard import guard_wheel


class ClusterJobDialog(QDialog):
    """Processes per node, nodes, GPUs per node and the target folder; :meth:`choice` is the answer."""

    def __init__(self, folder: str, options: JobOptions | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        options = options or JobOptions()
        self.setWindowTitle("Export a cluster job")
        intro = QLabel("Writes the current settings (config.json), a ready torchrun command (run.sh) and a Slurm "
                       "template (job.slurm) into a new folder, to run on other machines. The Nyström teacher is "
                       "shared by the processes; the export appears in the folder's export/ subfolder.")
        intro.setWordWrap(True)
        self.nproc = QSpinBox()
        self.nproc.setRange(1, 4096)
        self.nproc.setValue(options.nproc_per_node)
        self.nodes = QSpinBox()
        self.nodes.setRange(1, 65536)
        self.nodes.setValue(options.nodes)
        self.gpus = QSpinBox()
        self.gpus.setRange(0, 1024)
        self.gpus.setValue(options.gpus_per_node)
        self.gpus.setSpecialValueText("none (CPU)")
        for box in (self.nproc, self.nodes, self.gpus):
            guard_wheel(box)
        self.folder = QLineEdit(folder)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Processes per node:", self.nproc)
        form.addRow("Nodes (machines):", self.nodes)
        form.addRow("GPUs per node (Slurm):", self.gpus)
        form.addRow("New job folder:", row)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Write the job")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.folder.textChanged.connect(self._update)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self._update()

    def _browse(self) -> None:
        start = str(Path(self.folder.text()).parent) if self.folder.text().strip() else ""
        chosen, _ = QFileDialog.getSaveFileName(self, "New folder for the cluster job", self.folder.text() or start)
        if chosen:
            self.folder.setText(chosen)

    def _update(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(self.folder.text().strip()))

    def choice(self) -> tuple[Path, JobOptions]:
        return Path(self.folder.text().strip()).expanduser(), JobOptions(
            nproc_per_node=self.nproc.value(), nodes=self.nodes.value(), gpus_per_node=self.gpus.value())
