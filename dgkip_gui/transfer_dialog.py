"""What a transfer should do (:class:`TransferOptions`) and the dialog that asks for it.

The defaults come from the export: the real dataset is the one the run used (``config.data`` and
``config.test_data`` in its manifest), the networks and seeds those of :mod:`engine.transfer`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QMenu, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from engine.transfer.networks import NETWORKS
from engine.transfer import QUICK_EPOCHS, RECIPES
from dgkip_gui.widgets.wheel_guard import guard_wheel

NETWORK_TITLES = {"mlp": "MLP", "convnet": "ConvNet-3", "resnet18": "ResNet-18"}
MAX_SEEDS = 20
MAX_EPOCHS = 100_000


def network_title(name: str) -> str:
    """``"resnet18"`` → ``"ResNet-18"``; unknown names are shown as they are."""
    return NETWORK_TITLES.get(name, name)


@dataclass(frozen=True)
class TransferOptions:
    """Arguments of :func:`engine.transfer.exported.transfer_exported` beyond the export folder and the device.
    ``epochs`` None = every network's own recipe (:data:`engine.transfer.RECIPES`)."""
    networks: tuple[str, ...] = NETWORKS
    seeds: int = 3
    epochs: int | None = QUICK_EPOCHS
    data: str = "sample"
    test_data: str | None = None

    def epochs_of(self, network: str) -> int:
        return self.epochs if self.epochs is not None else RECIPES[network]["epochs"]

    def total_epochs(self) -> int:
        """Training epochs of the whole transfer (every network, every seed)."""
        return sum(self.seeds * self.epochs_of(name) for name in self.networks)

    def epochs_done(self, network: str, seed: int, epoch: int) -> int:
        """Epochs finished once ``epoch`` (1-based) of ``seed`` (0-based) of ``network`` has ended."""
        before = self.networks[: self.networks.index(network)]
        return sum(self.seeds * self.epochs_of(name) for name in before) + seed * self.epochs_of(network) + epoch


class TransferDialog(QDialog):
    """Networks, seeds, training length and the real dataset of a transfer.

    ``defaults`` fills the form; ``dataset_filter`` is the file-type filter of the dataset file chooser.
    """

    def __init__(self, export_path: Path, defaults: TransferOptions, *, start_dir: str = "",
                 dataset_filter: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Transfer: train networks on the distilled set")
        self._start_dir, self._filter = start_dir, dataset_filter

        self.networks: dict[str, QCheckBox] = {}
        network_row = QHBoxLayout()
        for name in NETWORKS:
            box = QCheckBox(network_title(name))
            box.setChecked(name in defaults.networks)
            box.setToolTip(f"Train a {network_title(name)} from scratch on the distilled images")
            box.toggled.connect(self._validate)
            self.networks[name] = box
            network_row.addWidget(box)
        network_row.addStretch(1)

        self.seeds = QSpinBox(minimum=1, maximum=MAX_SEEDS, value=defaults.seeds)
        self.seeds.setToolTip("Networks trained per architecture (seeds 0, 1, …); the table shows mean ± std")
        recipe = RECIPES[NETWORKS[0]]["epochs"]
        self.length = QComboBox()
        self.length.addItem(f"Quick: {QUICK_EPOCHS} epochs (CPU budget)", QUICK_EPOCHS)
        self.length.addItem(f"Full recipe: {recipe} epochs (as DC/DSA report)", None)
        self.length.addItem("Custom", -1)
        self.epochs = QSpinBox(minimum=1, maximum=MAX_EPOCHS, value=defaults.epochs or recipe)
        self.epochs.setSuffix(" epochs")
        self.length.setCurrentIndex({QUICK_EPOCHS: 0, None: 1}.get(defaults.epochs, 2))
        self.length.currentIndexChanged.connect(self._length_changed)
        length_row = QHBoxLayout()
        length_row.addWidget(self.length, 1)
        length_row.addWidget(self.epochs)

        self.data = QLineEdit(defaults.data)
        self.data.setToolTip('The real dataset: a folder or file, or "sample" for the built-in digits')
        self.data.textChanged.connect(self._validate)
        self.test_data = QLineEdit(defaults.test_data or "")
        self.test_data.setPlaceholderText("the dataset's own test split, or the run's held-out part")

        path = QLabel(str(export_path))
        path.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Distilled set:", path)
        form.addRow("Networks:", network_row)
        form.addRow("Seeds:", self.seeds)
        form.addRow("Training:", length_row)
        form.addRow("Real dataset:", self._with_browse(self.data))
        form.addRow("Test split:", self._with_browse(self.test_data))
        note = QLabel("The set's own preprocessing is applied to the real test images. "
                      "The results are saved in the export's manifest.json.")
        note.setWordWrap(True)
        note.setEnabled(False)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Train")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(self.buttons)
        self.resize(560, self.sizeHint().height())
        self._length_changed()
        self._validate()
        guard_wheel(self)

    def _with_browse(self, edit: QLineEdit) -> QWidget:
        """``edit`` with a Browse button offering a folder or a file chooser."""
        button = QToolButton(text="Browse…")
        button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(button)
        menu.addAction("Folder…").triggered.connect(lambda _=False: self._browse(edit, folder=True))
        menu.addAction("File…").triggered.connect(lambda _=False: self._browse(edit, folder=False))
        button.setMenu(menu)
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(edit, 1)
        layout.addWidget(button)
        return row

    def _browse(self, edit: QLineEdit, folder: bool) -> None:
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Choose the dataset folder", self._start_dir)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose the dataset file", self._start_dir, self._filter)
        if path:
            edit.setText(path)

    def _length_changed(self) -> None:
        data = self.length.currentData()
        custom = data == -1
        self.epochs.setEnabled(custom)
        if not custom:
            self.epochs.setValue(data or RECIPES[NETWORKS[0]]["epochs"])

    def _validate(self) -> None:
        ok = any(box.isChecked() for box in self.networks.values()) and bool(self.data.text().strip())
        self.ok.setEnabled(ok)
        self.ok.setToolTip("" if ok else "Tick at least one network and name the real dataset")

    def options(self) -> TransferOptions:
        """The form's choices."""
        data = self.length.currentData()
        epochs = self.epochs.value() if data == -1 else data
        return TransferOptions(networks=tuple(n for n, box in self.networks.items() if box.isChecked()),
                               seeds=self.seeds.value(), epochs=epochs, data=self.data.text().strip(),
                               test_data=self.test_data.text().strip() or None)


def default_options(data: str, test_data: str | None, previous: TransferOptions | None,
                    epochs: int | None) -> TransferOptions:
    """The dialog's starting point: the dataset of the export, and the networks, seeds and training length
    chosen last time (or ``epochs`` when there was no last time)."""
    base = previous or TransferOptions(epochs=epochs)
    return replace(base, data=data, test_data=test_data)
