"""A short measurement of the distillation step and certificate for the run estimate's time (issue 16).

The step of a small problem is mostly fixed cost: thousands of small torch calls whose price depends
on the loss, the mode, the optimizer, the thread count and how busy the machine is, which a model of
flops and a per-call rate got 1.5–3× wrong (and the certificates up to 10×). So the estimate times the
real thing: :func:`measure` runs :func:`engine.distill.run` itself for :data:`STEPS` steps (fewer, at
least :data:`MIN_STEPS`, when they take over :data:`STEP_SECONDS`) on random
pixels of the configured shape, classes and images per class, with as many teacher (KIP: target) rows
as the real run has, up to :data:`MAX_ROWS`, and as many test images, up to :data:`MAX_TEST`; it
returns the mean step after the first two (image snapshots included, as in a run) and the time of the
final certificate. The estimate adds
the modelled cost of the rows the real run has beyond these (:mod:`engine.estimate`).

Results are kept per setting that changes that work (mode, loss, kernel and its parameters, image
shape, classes, images per class, rows, dtype, optimizer, label learning, dual mode, whether KIP's
loss is mixed in, KIP's ridge, snapshots, threads), so an edit of λ, the step count or the learning rate costs nothing. One measurement takes
0.05–0.3 s on the built-in sample's shapes (plus torch's one-off optimizer import, 1–3 s, the first
time in a process; the run it precedes then no longer pays it).
"""
from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from engine.config import DistillConfig
from engine.data import Dataset, DatasetReport

MAX_ROWS = 2048      # teacher (or KIP target) rows of the measured problem at most
MAX_TEST = 512       # test images of the measured certificate at most
STEPS = 24           # steps run at most; the first two (warm-up) are not counted
MIN_STEPS = 4        # steps run at least
STEP_SECONDS = 0.25  # the steps stop (with MIN_STEPS done) once they have taken this long


@dataclass(frozen=True)
class StepTiming:
    """``step_s``: mean seconds of one step with ``rows`` teacher (KIP: target) rows;
    ``certificate_s``: seconds of one certificate with ``rows`` rows and ``test_rows`` test images."""
    step_s: float
    certificate_s: float
    rows: int
    test_rows: int


def measure(cfg: DistillConfig, chw: tuple[int, int, int], n_classes: int, rows: int, test_rows: int) -> StepTiming:
    """:class:`StepTiming` of ``cfg``'s step on CPU images of ``chw`` = (C, H, W) with ``n_classes``
    classes, measured with min(``rows``, MAX_ROWS) teacher rows and min(``test_rows``, MAX_TEST) test
    images (at least IPC training images and one test image per class). The caller keeps ``rows``
    and ``test_rows`` small enough for the probe's teacher solve and steps to be quick."""
    per_class = max(cfg.ipc, -(-min(rows, MAX_ROWS) // n_classes))
    test_per_class = max(1, min(test_rows, MAX_TEST) // n_classes)
    key = (cfg.mode, cfg.loss, cfg.kernel, repr(sorted(cfg.kernel_params.items())), tuple(chw), n_classes,
           per_class, test_per_class, cfg.ipc, cfg.dtype, cfg.optimizer, cfg.learn_labels, cfg.alpha_mode,
           cfg.preprocess, min(cfg.kip_batch, per_class * n_classes), cfg.kip_weight > 0, cfg.kip_ridge,
           cfg.snapshot_every, torch.get_num_threads())
    epoch = getattr(_REQUEST, "epoch", None)
    epoch = _EPOCH if epoch is None else epoch
    with _LOCK:                              # one probe at a time (the app asks from a background thread)
        if key not in _MEASURED:
            _MEASURED[key] = _measure(cfg, tuple(chw), n_classes, per_class, test_per_class, epoch)
        return _MEASURED[key]


def epoch() -> int:
    """The current cancel count: a probe asked for with :func:`requested_at` this value is abandoned
    by any later :func:`cancel`, even one made before the probe starts."""
    return _EPOCH


def running() -> bool:
    """Whether a probe is running now (using the CPU and torch's thread setting)."""
    return _ACTIVE is not None


class requested_at:
    """``with requested_at(e): estimate_run(...)`` on a worker thread: the probes it makes belong to
    the request made at :func:`epoch` ``e`` and are cancelled by any :func:`cancel` since."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def __enter__(self) -> None:
        _REQUEST.epoch = self.epoch

    def __exit__(self, *exc) -> None:
        _REQUEST.epoch = None


def cancel() -> None:
    """Abandon the probe running now and any waiting to start (their :func:`measure` raises
    :class:`engine.control.Cancelled`): the app calls this before it starts a run of its own."""
    global _EPOCH
    _EPOCH += 1
    control = _ACTIVE
    if control is not None:
        control.cancel()


_MEASURED: dict[tuple, StepTiming] = {}
_LOCK = threading.Lock()
_ACTIVE = None        # the running probe's RunControl
_EPOCH = 0            # cancel() count: a probe asked for before the latest cancel() does not start
_REQUEST = threading.local()   # the epoch a worker thread's request was made at (requested_at)


def _measure(cfg: DistillConfig, chw: tuple[int, int, int], n_classes: int, per_class: int,
             test_per_class: int, epoch: int) -> StepTiming:
    from engine.control import Cancelled, RunControl
    from engine.distill import run          # engine.distill imports the estimate, which imports this module
    from engine.events import Evaluation, Step

    rows = per_class * n_classes
    probe = cfg.replace(data="(step timing)", test_data=None, classes=None, max_per_class=None, init="real",
                        init_from=None, steps=STEPS, eval_every=0, teacher="exact", centres=None,
                        certify_exact=False, device="cpu", teacher_max_iter=min(cfg.teacher_max_iter, 3),
                        teacher_tol=1e-2, kip_batch=min(cfg.kip_batch, rows))
    global _ACTIVE
    elapsed: list[float] = []
    last_step = certificate = None
    _ACTIVE = control = RunControl()
    try:
        if epoch != _EPOCH:
            raise Cancelled()
        for event in run(probe, control, dataset=_random_dataset(chw, n_classes, per_class, test_per_class)):
            if isinstance(event, Step):
                elapsed.append(event.elapsed)
                last_step = time.perf_counter()
                if len(elapsed) >= MIN_STEPS and event.elapsed > STEP_SECONDS:
                    control.stop()                   # the run ends with its certificate, timed below
            elif isinstance(event, Evaluation) and last_step is not None and certificate is None:
                certificate = time.perf_counter() - last_step
    finally:
        _ACTIVE = None
    per_step = [b - a for a, b in zip(elapsed[1:], elapsed[2:])]       # mean: snapshots are part of the steps
    return StepTiming(statistics.mean(per_step), certificate or 0.0, rows, test_per_class * n_classes)


def _random_dataset(chw: tuple[int, int, int], n_classes: int, per_class: int, test_per_class: int) -> Dataset:
    c, h, w = chw
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(n_classes), per_class).astype(np.int64)
    yt = np.repeat(np.arange(n_classes), test_per_class).astype(np.int64)
    x = rng.integers(0, 256, (len(y), h, w, c), dtype=np.uint8)
    xt = rng.integers(0, 256, (len(yt), h, w, c), dtype=np.uint8)
    classes = [str(i) for i in range(n_classes)]
    report = DatasetReport.build(source="(step timing)", format="arrays", classes=classes,
                                 train_counts=[per_class] * n_classes, test_counts=[test_per_class] * n_classes,
                                 image_shape=(h, w, c), modes={"L" if c == 1 else "RGB": len(y)},
                                 test_source="test split", problems=[])
    return Dataset(x, y, xt, yt, classes, report, "(step timing)")
