"""``--self-test``: drive the real window offscreen through load → distil → export → verify.

Used to smoke-test packaged (PyInstaller) builds; any exception or failed check makes it exit
non-zero with the reason on stderr.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QEventLoop, QSettings, QTimer, SignalInstance

from engine.export import load_distilled
from dgkip_gui.errors import ErrorReport, ExceptionRelay
from dgkip_gui.main_window import MainWindow
from dgkip_gui.settings_store import SAMPLE, SettingsStore

STEPS, IPC = 20, 1


class SelfTestError(RuntimeError):
    """A self-test check failed."""


def wait_for(signal: SignalInstance, failure: SignalInstance, timeout_s: float, what: str) -> tuple:
    """Run the event loop until ``signal`` fires (return its arguments); raise on ``failure`` or timeout."""
    loop = QEventLoop()
    outcome: dict[str, tuple] = {}

    def done(*args: object) -> None:
        outcome["ok"] = args
        loop.quit()

    def failed(report: ErrorReport) -> None:
        outcome["error"] = (report,)
        loop.quit()

    signal.connect(done)
    failure.connect(failed)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    try:
        loop.exec()
    finally:
        signal.disconnect(done)
        failure.disconnect(failed)
    if "error" in outcome:
        report = outcome["error"][0]
        raise SelfTestError(f"{what}: {report.title}: {report.message}\n{report.details}")
    if "ok" not in outcome:
        raise SelfTestError(f"{what}: no answer within {timeout_s:.0f} s")
    return outcome["ok"]


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SelfTestError(message)


def run_self_test(relay: ExceptionRelay) -> int:
    """Return 0 when every check passes, 1 otherwise (the reason goes to stderr)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dgkip-self-test-") as tmp:
        store = SettingsStore(QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat))
        window = MainWindow(store)
        window.run_session.ask_before_discarding = False   # a failed check must not leave a question open
        relay.raised.connect(window.show_error)
        window.show()
        try:
            summary = _exercise(window, Path(tmp))
        except Exception as exc:  # noqa: BLE001 - every failure becomes the exit code
            print(f"self-test FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            window.abort_and_wait()
            window.close()
        print(f"self-test OK in {time.perf_counter() - started:.1f} s: {summary}")
        return 0


def _exercise(window: MainWindow, tmp: Path) -> str:
    """Load the sample, distil, export and verify through the window; return the summary line."""
    window.load_dataset(SAMPLE)
    (dataset,) = wait_for(window.dataset_loaded, window.error_shown, 120, "loading the sample dataset")
    n_classes = len(dataset.classes)
    check(n_classes >= 2, f"sample dataset has {n_classes} classes")

    # device stays "auto": a build whose CUDA libraries are broken fails here on a GPU machine
    config = window.settings.config().replace(ipc=IPC, steps=STEPS, eval_every=10, snapshot_every=5,
                                              device="auto", classes=None)
    window.settings.set_config(config)
    check(window.start_run(), "the run did not start")
    (reason,) = wait_for(window.run_finished, window.error_shown, 300, "the distillation run")
    check(reason == "finished", f"the run ended with {reason!r}, expected 'finished'")
    check(window.plots.point_count("gap") == STEPS, f"gap curve has {window.plots.point_count('gap')} points")
    check(window.grid.step is not None, "the image grid never showed the synthetic images")
    check(window.result is not None, "the run produced no result")

    target = window.export_result(tmp / "export")
    check(target is not None and target.is_dir(), "the export folder was not written")
    files = sorted(p.name for p in target.iterdir())
    check("manifest.json" in files, f"manifest.json missing from the export ({', '.join(files)})")
    loaded = load_distilled(target)
    expected = IPC * n_classes
    check(len(loaded.images) == expected, f"export holds {len(loaded.images)} images, expected {expected}")
    check(loaded.pixels.shape[0] == expected, f"export pixels hold {loaded.pixels.shape[0]} images")
    rate = window.result.metrics.get("steps_per_second")
    speed = f" at {rate:.0f} steps/s" if rate else ""
    return (f"{dataset.name}: {STEPS} steps{speed}, {expected} images exported and verified "
            f"({len(files)} files)")
