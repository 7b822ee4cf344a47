"""What every bench report records about where it ran, and the number formats its tables share."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from engine import __version__
from engine.kernels import make_kernel


def machine() -> dict[str, Any]:
    """The machine, in full: platform, CPU model, cores, memory (GiB), Python, torch, threads, CUDA."""
    cpu = _cpu_model() or platform.machine()
    mem = None
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        mem = round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem,
            "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "engine": __version__}


def machine_line() -> str:
    """The machine in one line, e.g. ``x86_64, Intel(R) Xeon(R) Processor @ 2.80GHz, 2 CPUs`` (the
    suites whose tables name it inline; the processor model where the system names it: timings of
    memory-bound steps differ by processor far more than by core count)."""
    model = _cpu_model()
    return f"{platform.machine()}, {model + ', ' if model else ''}{os.cpu_count()} CPUs"


def _cpu_model() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what ``platform`` knows, else ""."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor().strip()


def pct(v: float) -> str:
    """A fraction as a percentage with one decimal; NaN (not measured) as an em dash."""
    return "—" if v != v else f"{100 * v:.1f}"


def resolved_params(kernel: str, params) -> list[tuple[str, Any]]:
    """The kernel's parameters with its defaults filled in (a suite that sets none ran the defaults:
    ntk-fc depth 1, not 3); a data-dependent default (RBF bandwidth) reads 'from the data'."""
    resolved = make_kernel(kernel, **dict(params)).params()
    return [(k, "from the data" if v is None else v) for k, v in resolved.items()]
