"""Keep the GUI thread responsive during runs: warm the engine up, then settle the heap.

torch imports ``torch._dynamo`` (about 900 modules) the first time an optimiser is built, which
would happen inside the first run. The hundreds of thousands of objects that import creates then
make the next full garbage collection take 100–400 ms, and a collection holds the GIL, so the GUI
thread would freeze that long mid-run. :func:`warm_up` (called on the dataset-load worker thread)
does the import up front, collects once, and freezes the surviving heap so later collections only
look at objects created afterwards. Frozen objects are still freed by reference counting; only the
cycle collector skips them. Once per process is enough.
"""
from __future__ import annotations

import functools
import gc

import torch

from engine.plan import machine_rates


@functools.cache
def warm_up() -> None:
    """Build a throw-away optimiser (triggers torch's lazy imports), measure the run estimate's
    machine rates (cached; the settings panel would otherwise time them on the GUI thread), then
    collect and freeze."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    machine_rates()             # the run estimate's timings (~30 ms), off the GUI thread
    gc.collect()
    gc.freeze()
