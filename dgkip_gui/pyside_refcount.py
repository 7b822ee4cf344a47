"""Work around a reference-counting bug of some PySide6 builds on Python < 3.12.

PySide6 6.12.0's wheels release one reference to ``None`` each time a Qt method that returns nothing
(``setText``, ``setEnabled``, ``installEventFilter``, …) is called from Python. On Python 3.12 and
later ``None`` is immortal and this is harmless; on 3.11 ``None``'s count (about 130,000 once torch is
imported) falls with every such call, and when it reaches zero the interpreter aborts with
"Fatal Python error: none_dealloc: deallocating None" — after some minutes of live plotting, or in
the middle of the test suite. The same builds were seen to release ``True``/``False`` too
("deallocating True or False" at exit).

:func:`pin_none_if_leaking` measures the leak on a probe object and, only when it is there, gives
``None``, ``True`` and ``False`` the effectively infinite reference count Python 3.12 gives them.
"""
from __future__ import annotations

import ctypes
import sys

PROBE_CALLS = 200
PINNED = 1 << 48        # references added to None: ~2.8e14 leaked calls before it could reach zero


def none_leak_per_call(calls: int = PROBE_CALLS) -> float:
    """References to ``None`` lost per call of a void Qt method (0.0 on a correct build)."""
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(calls):
        probe.setObjectName("probe")
    return (before - sys.getrefcount(None)) / calls


def pin_none_if_leaking() -> bool:
    """Make ``None``, ``True`` and ``False`` immortal in practice when this PySide6 leaks ``None``
    (True when it did so)."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    if none_leak_per_call() < 0.5:
        return False
    for singleton in (None, True, False):
        ctypes.c_ssize_t.from_address(id(singleton)).value += PINNED    # ob_refcnt: PyObject's first field
    return True
