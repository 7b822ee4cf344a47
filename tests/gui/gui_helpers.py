"""Helpers for the GUI tests: load and run through the real window, tiny image folders, checked
screenshots under ``tests/_artifacts/``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtGui import QImage

from dgkip_gui.main_window import MainWindow

ARTIFACTS = Path(__file__).resolve().parents[1] / "_artifacts"
RUN_TIMEOUT_MS = 120_000


def load(qtbot, window: MainWindow, path: str | Path = "sample") -> None:
    with qtbot.waitSignal(window.dataset_loaded, timeout=RUN_TIMEOUT_MS):
        assert window.load_dataset(path)


def quick(window: MainWindow, **changes) -> None:
    """Small, fast run settings (few steps, IPC 1, a per-class cap) applied through the form."""
    settings = dict(ipc=1, steps=6, eval_every=3, snapshot_every=2, max_per_class=40, device="cpu",
                    kernel="ntk-fc", loss="cross-entropy", mode="dgkip")
    settings.update(changes)
    window.settings.set_config(window.settings.config().replace(**settings))
    assert window.settings.error is None, window.settings.error


def run_to_end(qtbot, window: MainWindow) -> str:
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        assert window.start_run()
    return blocker.args[0]


def image_folder(root: Path, classes: dict[str, int], size: int = 8) -> Path:
    """A tiny image-folder dataset: one subfolder of grayscale PNGs per class."""
    rng = np.random.default_rng(0)
    for k, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = np.clip(rng.normal(60 + 120 * k, 30, (size, size)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "L").save(root / name / f"{i}.png")
    return root


def save_screenshot(window: MainWindow, name: str) -> Path:
    """Grab the window, check it is not blank, save it under tests/_artifacts/."""
    image = window.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    pixels = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    pixels = pixels[:, : 3 * image.width()].reshape(image.height(), image.width(), 3)
    colours = len(np.unique(pixels.reshape(-1, 3)[::7], axis=0))
    assert pixels.std() > 20, f"{name}: screenshot looks blank (pixel std {pixels.std():.1f})"
    assert colours > 64, f"{name}: screenshot has only {colours} colours"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"window-{name}.png"
    assert image.save(str(path))
    return path
