"""Entry script of the frozen app (PyInstaller): make stdio safe, then run ``dgkip_gui.app:main``."""
import multiprocessing
import os
import sys


def _ensure_stdio() -> None:
    """Windowed builds (Windows, macOS) start with ``sys.stdout``/``sys.stderr`` set to ``None``;
    anything that writes to them (warnings, logging, faulthandler, progress bars) would crash."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))


if __name__ == "__main__":
    multiprocessing.freeze_support()  # worker processes of a frozen app re-enter here
    _ensure_stdio()
    from dgkip_gui.app import main

    raise SystemExit(main())
