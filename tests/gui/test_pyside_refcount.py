"""The PySide6 None-reference leak (dgkip_gui.pyside_refcount) cannot crash the app."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui

REPO = Path(__file__).resolve().parents[2]
CALLS = textwrap.dedent("""
    import sys
    calls = sys.getrefcount(None) + 50_000            # more void calls than None has references
    {setup}
    from PySide6.QtCore import QObject
    probe = QObject()
    for _ in range(calls):
        probe.setObjectName("x")
    print("survived")
""")


def run(setup: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-c", CALLS.format(setup=setup)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_more_qt_calls_than_none_has_references_do_not_abort():
    """With the package imported, a long session's worth of void Qt calls runs to its end; the same
    calls without it show whether this PySide6 build has the leak at all."""
    with_package = run("import dgkip_gui")
    assert with_package.returncode == 0 and "survived" in with_package.stdout, with_package.stderr
    from dgkip_gui.pyside_refcount import none_leak_per_call
    if none_leak_per_call() >= 0.5 and sys.version_info < (3, 12):     # this build leaks: show the crash
        bare = run("")
        assert bare.returncode != 0 and "deallocating None" in bare.stderr
