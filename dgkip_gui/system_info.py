"""Versions, compute device and memory use, for the About dialog, error reports and the status bar."""
from __future__ import annotations

import os
import platform
import sys

import numpy as np
import PySide6
import pyqtgraph
import torch
from PySide6.QtCore import qVersion

import engine
from engine.data.report import format_bytes
from engine.device import resolve_device
from dgkip_gui import __version__


def device_description(requested: str = "auto") -> str:
    """One line naming the device a run with ``DistillConfig.device == requested`` uses, e.g.
    ``"cuda: NVIDIA H200"`` or ``"cpu: 2 threads"``; a device this machine lacks reads ``"cuda: not
    available"`` (a run would refuse it; :func:`engine.device.resolve_device` says so)."""
    try:
        device = resolve_device(requested).type
    except RuntimeError:
        return f"{requested}: not available"
    if device == "cuda" and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    if device == "cpu":
        threads = torch.get_num_threads()
        return f"cpu: {threads} thread{'s' if threads != 1 else ''}"
    return device


def versions() -> dict[str, str]:
    """Name → version of everything a bug report needs."""
    cuda = torch.version.cuda or "none"
    cuda += " (available)" if torch.cuda.is_available() else " (not available)"
    return {
        "DGKIP Studio": __version__,
        "engine": engine.__version__,
        "Python": sys.version.split()[0],
        "torch": torch.__version__,
        "CUDA": cuda,
        "device": device_description(),
        "Qt": qVersion(),
        "PySide6": PySide6.__version__,
        "pyqtgraph": pyqtgraph.__version__,
        "NumPy": np.__version__,
        "platform": platform.platform(),
    }


def versions_text() -> str:
    """:func:`versions` as ``name: version`` lines."""
    return "\n".join(f"{name}: {value}" for name, value in versions().items())


def process_memory_bytes() -> int | None:
    """Resident memory of this process in bytes (``None`` where the platform offers no cheap way)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak if sys.platform == "darwin" else peak * 1024


def memory_description() -> str:
    """One line with process memory and, on CUDA, the GPU memory torch holds."""
    parts = []
    rss = process_memory_bytes()
    if rss is not None:
        parts.append(f"RAM {format_bytes(rss)}")
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        parts.append(f"GPU {format_bytes(torch.cuda.memory_allocated())}")
    return " · ".join(parts)
