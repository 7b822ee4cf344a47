"""The time model of a run (engine.plan) and a short measurement of the distillation step and certificate for the run estimate's time (issue 16).

The step of a small problem is mostly fixed cost: thousands of small torch calls whose price depends
on the loss, the mode, the optimizer, the thread count and how busy the machine is, which a model of
flops and a per-call rate got 1.5–3× wrong (and the certificates up to 10×). So the estimate times the
real thing: :func:`measure` runs :func:`engine.distill.run` itself for :data:`STEPS` steps (fewer, at
least :data:`MIN_STEPS`, when they take over :data:`STEP_SECONDS`) on random
pixels of the configured shape, classes and images per class, with as many teacher (KIP: target) rows
as the real run has, up to :data:`MAX_ROWS`, and as many test images, up to :data:`MAX_TEST`; it
returns the mean step after the first two (image snapshots included, as in a run) and the time of the
final certificate. The estimate adds
the modelled cost of the rows the real run has beyond these (:func:`seconds`).

Results are kept per setting that changes that work (mode, loss, kernel and its parameters, image
shape, classes, images per class, rows, dtype, optimizer, label learning, dual mode, whether KIP's
loss is mixed in, KIP's ridge, snapshots, threads), so an edit of λ, the step count or the learning rate costs nothing. One measurement takes
0.05–0.3 s on the built-in sample's shapes (plus torch's one-off optimizer import, 1–3 s, the first
time in a process; the run it precedes then no longer pays it).

and certificates are *measured*: :func:`measure` runs up to two dozen real steps and one certificate
on random pixels of the run's shapes with up to 2,048 rows (cached per setting that changes a step's
work), and the rows beyond those are added at a per-entry cost. Everything else is modelled: kernel
entries (teacher n², test rows) at a per-entry cost from the kernel's structure (an inner product at
the matmul rate plus elementwise work per layer and pixel) and the teacher's kernel products at a
streaming rate. The machine rates are measured once per process (:func:`machine_rates`); the step
measurement is made when first needed, so both include how busy the machine is at that moment.
"""
from __future__ import annotations

import functools
import json
import math
import statistics
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from engine.config import DistillConfig
from engine.data import Dataset, DatasetReport
from engine.hinge_cd import WORKING_SET
from engine.kernels import Kernel, make_kernel
from engine.losses import make_loss
from engine.plan.memory import CERT_BYTES, Nystrom, Run, Sizes, step_shape
from engine.solver import cd_hinge
from engine.timing import best_of

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
           cfg.snapshot_every, cfg.cpu_threads, torch.get_num_threads())
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
    from engine.distill import run          # engine.distill imports the plan, which imports this module
    from engine.events import Evaluation, Step

    rows = per_class * n_classes
    probe = probe_config(cfg, rows, STEPS)
    global _ACTIVE
    elapsed: list[float] = []
    last_step = certificate = None
    _ACTIVE = control = RunControl()
    try:
        if epoch != _EPOCH:
            raise Cancelled()
        for event in run(probe, control, dataset=random_dataset(chw, n_classes, per_class, test_per_class)):
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


def probe_config(cfg: DistillConfig, rows: int, steps: int) -> DistillConfig:
    """``cfg`` as a step-timing probe runs it: ``steps`` steps on the CPU on :func:`random_dataset`'s
    ``rows`` training images, an exact teacher solved roughly (3 iterations, tolerance 1e-2), no
    evaluations (the probe's, and the speed bench's DGKIP cells)."""
    return cfg.replace(data="(step timing)", test_data=None, classes=None, max_per_class=None, init="real",
                       init_from=None, steps=steps, eval_every=0, teacher="exact", centres=None,
                       certify_exact=False, device="cpu", teacher_max_iter=min(cfg.teacher_max_iter, 3),
                       teacher_tol=1e-2, kip_batch=min(cfg.kip_batch, rows))


def random_dataset(chw: tuple[int, int, int], n_classes: int, per_class: int, test_per_class: int) -> Dataset:
    """Uniform random uint8 images of shape ``chw``, ``per_class`` training and ``test_per_class`` test
    images per class (seed 0): the probe's data (and the speed bench's DGKIP steps)."""
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


NYSTROM_PASSES = {"smooth": 120, "hinge": 2_000}  # passes over K(X, Z) (two products each): 114–122 measured for

PROBE_SECONDS = 0.05       # modelled cost of a step-timing probe's step, teacher solve and test rows, at most
# A step's rows beyond the probe's cost this many modelled forward entries each (forward and backward):
# measured 1.17 on MNIST, 3,000 rows against the probe's 730 (ntk-fc, IPC 10, cross-entropy; 19.0 ms
# against 12.6 ms a step); 1.5 leans to the safe side
EXTRA_ROW_FACTOR = 1.5

# Time model constants, calibrated on the sample digits (1,438 × 8×8 images) on a 2-core CPU, in
# units of the once-measured machine rates (so they carry over to faster or slower machines):
SMOOTH_MATVECS = 80         # teacher kernel products, smooth losses (observed 49–83 Newton-CG products)
HINGE_MATVECS = 2_000       # hinge by FISTA (features, GPU): iterations (observed 2,000)
HINGE_UPDATES = 1           # hinge by working-set coordinate descent (dense CPU kernel): coordinate updates
# per point and class (measured 0.93 on the sample digits, 10 classes, tolerance 1e-6; 0.64 and 0.88 on
# MNIST 3 vs 5, n = 11,552, one column at 1e-6 and 1e-8). With these constants the model gave 2.9 s for
# the 3-vs-5 teacher (two columns; measured 1.0 s at 1e-8) and 7.1 s for 10 classes at n = 10,000 (2.5 s)
# on the shared 2-core machine: an upper-side estimate, the rates being measured with two contended threads
HINGE_CERTIFICATES = 2      # its exact products K α in full-product equivalents (they read only the rows
# where α ≠ 0; the first, at α = 0, is free)
HINGE_NEWTON = 6            # semismooth Newton steps per sub-problem (observed 5–7)
MATVEC_CALLS = 25           # small torch calls per teacher iteration besides the kernel product


def format_seconds(seconds: float) -> str:
    """A rough duration: ``0.2`` → "under a second", ``40`` → "about 40 s", ``300`` → "about 5 min",
    ``20000`` → "about 6 h"."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.0f} h"


# -------------------------------------------------------------------------------------------- time
@functools.cache
def machine_rates() -> dict[str, float]:
    """Measured once per process on the CPU in float64 with torch's current threads (≈ 30 ms; blocks
    big enough that thread wake-ups on a busy machine do not dominate): ``flops`` (matrix-product
    flop/s; ``flops32`` the same in float32, the rate of networks run in float32), ``stream`` (bytes/s of a matrix read by a thin product, like the teacher's K V), ``call``
    (seconds per small torch call), ``element`` (seconds per element of a transcendental op) and
    ``simple`` (seconds per element of a product: ReLU, pooling and the like)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(512, 512, generator=g, dtype=torch.float64)
    big = torch.full((4096, 1024), 0.5, dtype=torch.float64)
    thin = torch.randn(1024, 10, generator=g, dtype=torch.float64)
    small = torch.randn(16, 10, generator=g, dtype=torch.float64)
    vec = torch.linspace(-1.0, 1.0, 1 << 20, dtype=torch.float64)

    def calls() -> None:
        for _ in range(100):
            small.mul(small)
    a32 = a.float()
    return {"flops": 2 * 512 ** 3 / best_of(lambda: a @ a, 2),
            "flops32": 2 * 512 ** 3 / best_of(lambda: a32 @ a32, 2),
            "stream": big.numel() * 8 / best_of(lambda: big @ thin, 2),
            "call": best_of(calls) / 100,
            "element": best_of(lambda: torch.atan2(vec, vec), 2) / vec.numel(),
            "simple": best_of(lambda: vec.mul(vec), 2) / vec.numel()}


def _pair_seconds(kernel: Kernel, chw: tuple[int, int, int], rates: dict[str, float]) -> float:
    """Seconds per kernel entry k(x_i, x_j) (float64, CPU): the kernel's :meth:`Kernel.pair_cost` —
    flops at the matmul rate plus elementwise work in units of one transcendental op. Kernels that do
    not know their cost are timed once on a small block instead."""
    cost = kernel.pair_cost(chw)
    if cost is None:
        return _timed_pair_seconds(kernel.name, json.dumps(kernel.params(), sort_keys=True, default=str), chw)
    flops, units = cost
    return flops / rates["flops"] + units * rates["element"]


@functools.lru_cache(maxsize=16)
def _timed_pair_seconds(name: str, params: str, chw: tuple[int, int, int]) -> float:
    """Seconds per entry of a kernel the model does not know, timed on 16 × 64 pairs after a warm-up."""
    kernel = make_kernel(name, **json.loads(params))
    g = torch.Generator().manual_seed(0)
    a = torch.randn((16,) + tuple(chw), generator=g, dtype=torch.float64)
    b = torch.randn((64,) + tuple(chw), generator=g, dtype=torch.float64)
    kernel = kernel.with_data_defaults(b)
    with torch.no_grad():
        return best_of(lambda: kernel(a, b), repeats=2) / (16 * 64)


def run_seconds(run: Run, s: Sizes, storage: str, nys: Nystrom | None = None) -> dict[str, float]:
    """Rough wall time in seconds on the CPU per part of the run (see the module doc)."""
    cfg, kernel, p = run.config, run.kernel, run.p
    rates = machine_rates()
    n, nt, d, k = s.n, s.n_test, s.d, s.k
    m = cfg.ipc * k
    if kernel.explicit:
        per_image, pair = kernel.feature_seconds(s.chw, rates), 2 * p / rates["flops"]
    else:
        per_image, pair = 0.0, _pair_seconds(kernel, s.chw, rates)

    def block(rows: int, cols: int) -> float:
        """k(a, b) for rows × cols pairs: features of both sides and φφᵀ, or the entries one by one."""
        return (rows + cols) * per_image + rows * cols * pair if kernel.explicit else rows * cols * pair

    features = storage == "features"
    explicit = kernel.explicit                    # w* after the solve: test set, steps, certificates
    t: dict[str, float] = {"preprocessing": 10 * (n + nt) * d * rates["element"]}
    if cfg.preprocess == "zca":
        t["preprocessing"] += (10 * d ** 3 + 4 * (n + nt) * d * d) / rates["flops"]
    # teacher: the operator, then the solver's kernel products
    rows_of = n                                   # the rows the teacher keeps (support or centres)
    if storage == "nystrom":
        M = rows_of = nys.centres
        kxz = block(n, M)
        t["teacher kernel"] = block(M, M) + (kxz if nys.cache else 0.0)
        t["Cholesky factors"] = (M ** 3 / 3 + 2 * M ** 3 + M ** 3 / 3) / rates["flops"]
        passes = min(NYSTROM_PASSES["hinge" if cfg.loss == "hinge" else "smooth"], 60 * (cfg.teacher_max_iter + 1))
        per_pass = (2 * n * M * CERT_BYTES / rates["stream"] if nys.cache else kxz) + 4 * M * M * k / rates["flops"]
        t["teacher solve"] = passes * (per_pass + MATVEC_CALLS * max(rates["call"], n * k * rates["element"]))
        if cfg.certify_exact:
            t["exact certificate"] = n * per_image if explicit else block(n, n)
    hinge_cd = not features and storage != "nystrom" and cd_hinge(make_loss(cfg.loss), run.cdev, torch.float64)
    if cfg.loss == "hinge":
        matvecs = HINGE_CERTIFICATES if hinge_cd else min(HINGE_MATVECS, 50 * cfg.teacher_max_iter)
    else:
        matvecs = min(SMOOTH_MATVECS, 11 * (cfg.teacher_max_iter + 1))
    product = (2 * n * p if features else n * n) * CERT_BYTES / rates["stream"]
    if storage != "nystrom":
        t["teacher kernel"] = n * per_image if features else block(n, n)
        t["teacher solve"] = matvecs * (product + MATVEC_CALLS * max(rates["call"], n * k * rates["element"]))
    if hinge_cd:                     # engine.hinge_cd: blocks of q coordinates per column
        q = min(WORKING_SET, n)
        updates = HINGE_UPDATES * n * k
        per_update = (n * CERT_BYTES / rates["stream"]                         # its kernel row: copy, product
                      + HINGE_NEWTON * ((q * q / 3 + 4 * q) / rates["flops"] + 25 * rates["call"] / q))
        per_block = 12 * n * k * rates["element"] + 20 * k * rates["call"]    # selection, scores (O(n k))
        t["teacher solve"] += updates * per_update + updates / (q * k) * per_block
    # test set: teacher scores and k(x, x)
    t["test set"] = nt * per_image if explicit else block(nt, rows_of) + nt * per_image      # φ(x_test) once
    # distillation steps and certificates: measured on a problem of the run's shapes with up to
    # step_timing.MAX_ROWS rows (engine.plan.time), plus the modelled cost of the rows beyond those
    objective, z = run.objective, step_shape(run, s, rows_of)
    work_rows = objective.timed_rows(z)
    # the probe's rows: as many as the run has, within PROBE_SECONDS of modelled teacher, step and test work
    pair_cost = per_image + pair if explicit else pair
    probe_rows = int(min(work_rows, PROBE_SECONDS / max(1e-12, EXTRA_ROW_FACTOR * m * pair_cost),
                         math.sqrt(PROBE_SECONDS / max(1e-12, pair_cost))))
    probe_test = int(min(nt, PROBE_SECONDS / max(1e-12, m * pair_cost)))
    timing = measure(cfg, s.chw, k, probe_rows, probe_test)
    extra_rows = objective.extra_row_seconds(z, timing.rows, block, pair)   # the rows beyond the probe's
    t["steps"] = cfg.steps * (timing.step_s + EXTRA_ROW_FACTOR * extra_rows)
    cache = objective.cache_seconds(z, per_image)
    if cache:
        t["KIP features of x_train"] = cache
    evals = (cfg.steps - 1) // cfg.eval_every + 1 if cfg.eval_every else 1
    extra_test = (nt - timing.test_rows) * m * pair if explicit else block(nt, m) - block(timing.test_rows, m)
    extra_cert = (0.0 if explicit else block(m, rows_of) - block(m, timing.rows)) + max(0.0, extra_test)
    t["certificates"] = evals * (timing.certificate_s + max(0.0, extra_cert))
    return t


def two_figures(seconds: float) -> float:
    """Round to two significant figures (one figure alone is up to 1.4× off: 14 s would read 10 s)."""
    if seconds <= 0:
        return 0.0
    return float(f"{seconds:.2g}")
