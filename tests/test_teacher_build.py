"""The exact teacher's kernel build: in row tiles with progress, Cancel honoured between tiles and
between the solver's kernel products, the tiled matrix equal to the whole one."""
from __future__ import annotations

import math
import threading
import time

import pytest
import torch

from engine.control import Cancelled, RunControl
from engine.events import Progress, TeacherProgress
from engine.generators import drain
from engine.kernels import make_kernel
from engine.losses import make_loss
from engine.operators import MIN_TILE_ROWS, PROGRESS_TILES, build_operator_iter
from engine.teacher import fit_teacher


def _data(n: int, d: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("name", ["ntk-fc", "nngp-conv", "rf-fc"])
def test_tiled_build_equals_the_whole_kernel_and_reports_progress(name):
    x, _ = _data(230, 16)
    if name == "nngp-conv":
        x = x.reshape(230, 1, 4, 4)
    kernel = make_kernel(name, **({"depth": 1} if name == "nngp-conv" else {}))
    events = []
    op = drain(build_operator_iter(kernel, x, 2**30, prefer_features=False), events.append)
    with torch.no_grad():
        whole = kernel(x)
    torch.testing.assert_close(op.dense, whole, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op.dense.diagonal(), kernel.diag(x), rtol=1e-12, atol=1e-12)
    assert len(events) == math.ceil(230 / MIN_TILE_ROWS) and all(isinstance(e, Progress) for e in events)
    assert [e.done for e in events] == sorted(e.done for e in events) and events[-1].done == events[-1].total == 230


def test_tiles_are_neither_one_row_nor_fewer_than_the_progress_count():
    """Tiles of one row ran the teacher's K build 10× slower (2,000 single-row products); large n
    gets PROGRESS_TILES tiles, small n tiles of MIN_TILE_ROWS rows."""
    for n, tiles in ((1000, math.ceil(1000 / MIN_TILE_ROWS)), (PROGRESS_TILES * 100, PROGRESS_TILES)):
        x, _ = _data(n, 4)
        events = []
        drain(build_operator_iter(make_kernel("ntk-fc"), x, 2**32), events.append)
        assert len(events) == tiles, (n, len(events))


def test_cancel_during_the_kernel_build_stops_at_the_next_tile():
    x, y = _data(600)
    loss = make_loss("cross-entropy")
    control = RunControl()
    seen = []
    gen = fit_teacher(make_kernel("ntk-fc"), loss, 1e-3, x, loss.targets(y, 3), checkpoint=control.checkpoint)
    with pytest.raises(Cancelled):
        for event in gen:
            seen.append(event)
            if isinstance(event, Progress) and len(seen) == 3:
                control.cancel()
    assert len(seen) == 3 and not any(isinstance(e, TeacherProgress) for e in seen)


def test_cancel_inside_a_newton_step_stops_within_a_kernel_product():
    """A tiny λ makes each Newton step many CG products, and Cancel is checked before each product:
    a cancel requested at the third checkpoint of the solve stops it inside its first Newton step
    (checked once per Newton step, the solve would report a second iteration first)."""
    x, y = _data(800)
    loss = make_loss("squared")
    control = RunControl()
    state = {"iterations": 0, "checks": 0}

    def checkpoint():
        if state["iterations"]:
            state["checks"] += 1
            if state["checks"] == 3:
                control.cancel()
        control.checkpoint()
    with pytest.raises(Cancelled):
        for event in fit_teacher(make_kernel("ntk-fc"), loss, 1e-9, x, loss.targets(y, 3), tol=1e-14,
                                 checkpoint=checkpoint):
            if isinstance(event, TeacherProgress):
                state["iterations"] += 1
    assert state["iterations"] == 1 and state["checks"] == 3


def test_cancel_latency_of_the_exact_teacher_is_under_a_second():
    """Measured, not modelled: Cancel from another thread 0.3 s into a teacher whose kernel build and
    solve take several seconds; the generator raises within a second (generous for a loaded CI)."""
    x, y = _data(3000, 784)
    loss = make_loss("cross-entropy")
    control = RunControl()
    gen = fit_teacher(make_kernel("ntk-fc", depth=3), loss, 1e-6, x, loss.targets(y, 3), tol=1e-12,
                      checkpoint=control.checkpoint)
    stamp = {}

    def cancel():
        stamp["at"] = time.perf_counter()
        control.cancel()
    timer = threading.Timer(0.3, cancel)
    timer.start()
    with pytest.raises(Cancelled):
        for _ in gen:
            pass
    latency = time.perf_counter() - stamp["at"]
    timer.join()
    assert latency < 1.0, latency
