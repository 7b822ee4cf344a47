"""Device and dtype resolution. Certificates always use float64 (on CPU when the device lacks it)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


def resolve_device(name: str) -> torch.device:
    """"auto" → CUDA when present, else MPS when present, else CPU; explicit names are checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA GPU is available; choose 'auto' or 'cpu'")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device 'mps' was requested but Apple MPS is not available; choose 'auto' or 'cpu'")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def certificate_device(device: torch.device) -> torch.device:
    """Where float64 certificates run: the device itself, except MPS (no float64) → CPU."""
    return torch.device("cpu") if device.type == "mps" else device


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


# Below this many multiply-adds per step, torch's intra-op thread pool costs more than it saves: on a
# 2-core machine with any other load, a (100 × 100)·(100 × 10) product took 2.7 ms with 2 threads
# and 22 µs with 1 (measured while another process used a core).
SMALL_STEP_FLOPS = 2e9


def step_threads(device: torch.device, flops_per_step: float) -> int | None:
    """Intra-op threads for the distillation step loop: 1 for small CPU steps, else unchanged (None)."""
    return 1 if device.type == "cpu" and flops_per_step < SMALL_STEP_FLOPS else None


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: leave as is), then restore the setting."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
