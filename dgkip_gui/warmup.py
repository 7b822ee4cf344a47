"""Keep the GUI thread responsive during runs: warm the engine up, then settle the heap.

torch imports ``torch._dynamo`` (about 900 modules) the first time an optimiser is built, which
would happen inside the first run. The hundreds of thousands of objects that import creates then
make the next full garbage collection take 100–400 ms, and a collection holds the GIL, so the GUI
thread would freeze that long mid-run. :func:`warm_up` (called on the job thread that loads a
dataset) does the import up front; :func:`settle_heap` (called on the GUI thread when that job has
ended: cycles are only ever collected there, see :mod:`dgkip_gui.garbage`) collects once and freezes
the surviving heap, so later collections only look at objects created afterwards. Frozen objects
are still freed by reference counting; only the cycle collector skips them. Once per process.
"""
from __future__ import annotations

import functools
import gc

import torch

from engine.plan import machine_rates

_settled = False


@functools.cache
def warm_up() -> None:
    """Build a throw-away optimiser (triggers torch's lazy imports) and measure the run estimate's
    machine rates (cached; the settings panel would otherwise time them on the GUI thread)."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    machine_rates()             # the run estimate's timings (~30 ms), off the GUI thread


def settle_heap() -> None:
    """On the GUI thread after a job: once :func:`warm_up` has run, collect and freeze the heap
    (once per process; later calls, and calls before the warm-up, do nothing)."""
    global _settled
    if _settled or warm_up.cache_info().currsize == 0:
        return
    _settled = True
    gc.collect()
    gc.freeze()
