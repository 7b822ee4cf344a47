"""Entry point: ``dgkip`` / ``python -m dgkip_gui`` (see ``--help``)."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from dgkip_gui import APP_NAME, ORG_NAME, __version__
from dgkip_gui.platform_check import missing_libraries, missing_message, uses_xcb

NO_DISPLAY = "no display found; use --self-test or set QT_QPA_PLATFORM=offscreen"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dgkip", description=f"{APP_NAME}: certified dataset distillation.")
    parser.add_argument("dataset", nargs="?", help="dataset folder or file to open at start")
    parser.add_argument("--sample", action="store_true", help="open the built-in sample dataset at start")
    parser.add_argument("--config", metavar="JSON", help="run settings to load (as saved by the app or the CLI)")
    parser.add_argument("--self-test", action="store_true",
                        help="run a short distillation on the sample data offscreen, export it, verify, exit")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def display_missing() -> bool:
    """True on Linux/BSD when Qt would abort because no display server is reachable."""
    if os.environ.get("QT_QPA_PLATFORM") or sys.platform in ("win32", "darwin"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def leave_a_core_for_the_gui() -> None:
    """torch computes on every core by default, and the GUI thread then competes for CPU with the
    engine's OpenMP threads (on a busy two-core machine that stalls the window and slows the run many
    times over). Use one core fewer, unless ``OMP_NUM_THREADS`` chose a number explicitly."""
    if "OMP_NUM_THREADS" not in os.environ:
        import torch
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))


def main(argv: list[str] | None = None) -> int:
    """Start the app (or the self-test); return the process exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.self_test:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    elif display_missing():
        print(f"dgkip: {NO_DISPLAY}", file=sys.stderr)
        return 2
    elif uses_xcb() and (missing := missing_libraries()):
        print(f"dgkip: {missing_message(missing)}", file=sys.stderr)    # no dialog possible without the plugin
        return 2

    from PySide6.QtWidgets import QApplication

    from dgkip_gui.errors import ErrorReport, ExceptionRelay, install_excepthooks
    from dgkip_gui.logging_setup import setup_logging

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(ORG_NAME)
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    setup_logging()
    leave_a_core_for_the_gui()
    logging.getLogger(__name__).info("%s %s starting (%s)", APP_NAME, __version__, " ".join(sys.argv[1:]))
    relay = ExceptionRelay()
    install_excepthooks(relay)

    if args.self_test:
        from dgkip_gui.self_test import run_self_test
        return run_self_test(relay)

    from engine.config import ConfigError, DistillConfig
    from dgkip_gui.main_window import MainWindow

    window = MainWindow()
    relay.raised.connect(window.show_error)
    window.show()
    if args.config:
        try:
            window.settings.set_config(DistillConfig.load(args.config).validate())
        except ConfigError as exc:
            window.show_error(ErrorReport.from_exception(exc, "Could not load the settings"))
    if args.sample:
        window.load_dataset("sample")
    elif args.dataset:
        window.load_dataset(args.dataset)
    return app.exec()
