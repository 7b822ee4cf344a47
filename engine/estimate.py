"""Memory and time estimate of a run, before anything runs (shown by the GUI, printed by the CLI).

``estimate_run(config, report) -> RunEstimate`` needs only the dataset report (class names, per-class
train/test counts, image shape (H, W, C)) and the config; it reads no pixels and allocates nothing big.

The teacher is chosen here too (``teacher``, ``centres``; config ``teacher`` = auto): the exact teacher
(all n points) when the whole run fits the memory budget with it, else the Nyström teacher
(engine.nystrom) with the largest number of centres M whose run fits, K(X, Z) cached. The run asks
:func:`check_run` for this plan and follows it.

Refusal (``fits``) is decided here, once, for the estimate and for the run alike: :func:`check_run`,
which :func:`engine.distill.run` calls right after the dataset is prepared (before any kernel is
built), raises :class:`engine.operators.ResourceError` with the estimate's message exactly when
``fits`` is false. A run does not fit when, with the training-set size it will have (classes selected,
``max_per_class`` applied),

- the teacher's kernel would be stored dense (n × n, float64) over ``memory_budget_gb`` — the rule of
  :func:`engine.operators.operator_plan`, which ``build_operator`` still applies on its own; or
- the modelled peak over *all* stages (``memory_bytes``; dense or n × p feature storage, conv kernels'
  per-pixel covariances in the step graph, …) is over ``memory_budget_gb``; or
- the peak drawn from one memory pool is over what this machine can give now
  (:func:`available_bytes`: ``MemAvailable`` of host RAM, free memory of the CUDA device), which is
  the effective limit whenever it is below the budget.

The refusal message says what the run needs (peak, its stage and largest parts, every stage's peak)
and the alternatives the model itself checked: the largest ``max_per_class`` that fits, a smaller
``ipc`` (the step graph grows with ipc × n), an explicit-feature kernel (``rf-fc``, ``rf-conv``) that
fits, and the budget that would do — when raising it helps at all.

``memory_bytes`` is the modelled *peak* of the run's own allocations (not the interpreter and libraries,
≈ 0.3–0.5 GiB), the largest of these stages, each counting everything alive at that moment:

- data: the loaded uint8 dataset (+ the copy class selection / the cap makes), the float32 train and
  evaluation-test features (N, H, W, C), the float64 certificate copy of x_train (n·d·8) on the
  certificate device, ZCA matrices (2·d²·8) and the preprocessing temporaries;
- teacher: the kernel operator while it is built — dense n²·8, twice while :meth:`Kernel.__call__`
  concatenates several row tiles, plus one tile of temporaries (``bytes_per_pair`` × rows × n, at most
  the kernel's ``tile_bytes``; the allocator keeps it), plus n²·8 / 2 of heap growth when it takes
  ``HEAP_GROWTH_TILES`` tiles or more (measured on MNIST); features 3·n·p·8 (tile list, concatenations)
  plus one tile of temporaries — plus ≈ 20 (n, C) float64 solver arrays;
- test set: the teacher (its support rows x[keep], a copy: n·d·8; or weights p·C), the float64
  evaluation points (≤ ``MAX_EVAL_TEST``), one 2048-row block of test-kernel rows (2048 × n) with its
  tile temporaries, and k(x, x) on the test points (conv kernels: per-pixel maps, 16 arrays);
- distill step: the autograd graph of k(x̃, x_teacher) (m × n pairs at the kernel's own
  ``bytes_per_pair`` under autograd — for conv kernels H·W·(12 + 17·depth) or (16 + 20·depth) arrays
  per pair: the per-position covariance cost — kept alive by backward whatever the tiling), plus the
  work-dtype copy of the teacher and, for KIP, of x_train and a ``kip_batch`` of rows;
- certificate: k(x̃, x_teacher) in float64 without autograd, plus the test-set predictions.

``seconds_hint`` (CPU only, else ``None``) is rounded to two significant figures. The distillation steps
and certificates are *measured*: :mod:`engine.step_timing` runs up to two dozen real steps and one certificate
on random pixels of the run's shapes with up to 2,048 rows (cached per setting that changes a step's
work), and the rows beyond those are added at a per-entry cost. Everything else is modelled: kernel
entries (teacher n², test rows) at a per-entry cost from the kernel's structure (an inner product at
the matmul rate plus elementwise work per layer and pixel) and the teacher's kernel products at a
streaming rate. The machine rates are measured once per process (:func:`machine_rates`); the step
measurement is made when first needed, so both include how busy the machine is at that moment.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import torch

from engine.certify import MAX_EVAL_TEST, predict
from engine.config import ConfigError, DistillConfig
from engine.data.report import format_bytes
from engine.device import certificate_device, resolve_device, resolve_dtype
from engine.kernels import Kernel, make_kernel
from engine.operators import ResourceError, max_dense_points, operator_plan
from engine.objectives import Objective, StepShape, make_objective
from engine.nystrom import FEATURE_ROWS
from engine.losses import make_loss
from engine.hinge_cd import WORKING_SET
from engine.solver import cd_hinge
from engine.step_timing import measure
from engine.teacher import Teacher
from engine.timing import best_of

CERT_BYTES = 8                                                             # float64 teacher and certificates
SCORE_ROWS = inspect.signature(Teacher.scores_tiled).parameters["rows"].default   # test rows per block
PREDICT_ROWS = inspect.signature(predict).parameters["rows"].default
SOLVER_ARRAYS = 20          # (n, C) float64 arrays alive in the Newton-CG teacher solver (counted in solver.py)
NYSTROM_ARRAYS = 8          # (n, C) float64 arrays alive in the Nyström solver (Y, f, α, Δf, trial f, ...)
NYSTROM_SQUARES = 6         # (M, M) float64 arrays: K_ZZ, its jittered copy, L, LᵀL, A and a temporary
NYSTROM_PASSES = {"smooth": 120, "hinge": 2_000}  # passes over K(X, Z) (two products each): 114–122 measured for
# cross-entropy on all of MNIST at λ 1e-5 (M = 1,000 to 10,000); hinge (Huber continuation): an order of magnitude
# from the sample digits (hundreds to thousands of passes), not measured on whole datasets
# The dense teacher's build in many row tiles (≥ 4: n ≳ 3,500 for ntk-fc) grows the heap by about half the
# matrix beyond 2 × K + one tile: glibc keeps freed tile temporaries interleaved with the kept output
# blocks. Peak RSS measured for ntk-fc, MNIST 3 vs 5 (n = 11,552) and 10 classes at 1,200 per class
# (n = 12,000): 2.2–3.1 and 2.6–3.3 GiB over the loaded dataset, against 2.35 and 2.55 GiB modelled
# without this term (n = 4,000 and 6,000 measured 0.31 and 0.37 × K above the same model).
HEAP_GROWTH_TILES = 4

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


@dataclass(frozen=True)
class RunEstimate:
    """Estimate of one run.

    ``memory_bytes``: modelled peak bytes of the run's allocations (host and device together);
    ``seconds_hint``: wall time in seconds (two significant figures) or ``None`` when unknown
    (non-CPU devices); ``fits``: ``False`` exactly when the run is refused (:func:`check_run` raises
    :class:`engine.operators.ResourceError` with ``message``): the peak is over the memory budget or
    over the memory this machine has available; ``message``: when it does not fit, what the run needs
    (per stage) and what to change, else a short confirmation.
    ``n_train``: training images after class selection and the cap; ``n_test``: test points evaluated;
    ``storage``: "dense" (n × n), "features" (n × p) or "nystrom" (n × M) teacher operator of
    ``operator_bytes`` bytes;
    ``teacher``: "exact" or "nystrom" (the plan the run follows), ``centres``: Nyström centres M,
    ``teacher_reason``: why, in words; ``nystrom_cache``: K(X, Z) is kept (else recomputed per pass);
    ``budget_bytes``: the memory budget in bytes; ``peak_stage``: the stage of the peak, with its
    ``parts`` as (name, bytes) pairs; ``stages``: every stage's peak as (stage, bytes) pairs, in run
    order; ``limit_bytes``: the limit the peak was held to (the budget, or less where this machine
    has less available); ``device``: the compute device.
    ``changes``: when refused, the alternatives the message names as (short label, config field
    changes) pairs, e.g. ``("Cap at 2,660 per class", {"max_per_class": 2660})`` — each checked by the
    model to fit, so applying one (``config.replace(**changes)``) gives a run that is not refused.
    """

    memory_bytes: int
    seconds_hint: float | None
    fits: bool
    message: str
    n_train: int = 0
    n_test: int = 0
    storage: str = "dense"
    operator_bytes: int = 0
    budget_bytes: int = 0
    peak_stage: str = ""
    parts: tuple[tuple[str, int], ...] = ()
    device: str = "cpu"
    stages: tuple[tuple[str, int], ...] = ()
    limit_bytes: int = 0
    teacher: str = "exact"
    centres: int | None = None
    teacher_reason: str = ""
    nystrom_cache: bool = True
    changes: tuple[tuple[str, dict[str, Any]], ...] = ()
    ranks: int = 1

    def summary(self) -> str:
        """One line for the CLI, e.g. ``estimate: peak memory about 64.0 MiB (teacher …), about 20 s on cpu``."""
        shape = (f"{self.n_train:,} × {self.n_train:,} dense" if self.storage == "dense"
                 else f"Nyström {self.n_train:,} × {self.centres:,} K(X, Z)"
                      + ("" if self.nystrom_cache else " recomputed per pass") if self.storage == "nystrom"
                 else f"{self.n_train:,} × p features")
        each = f" per process ({self.ranks} processes; rank 0 also distils)" if self.ranks > 1 else ""
        text = (f"estimate: peak memory about {format_bytes(self.memory_bytes)}{each} at the {self.peak_stage} "
                f"stage (teacher kernel {shape}, {format_bytes(self.operator_bytes)}; budget "
                f"{format_bytes(self.budget_bytes)})")
        if self.seconds_hint is not None:
            text += f", {format_seconds(self.seconds_hint)} on {self.device}"
        return text

    def details(self) -> str:
        """Multi-line breakdown of the peak stage (the GUI's tooltip)."""
        lines = [f"Peak at the {self.peak_stage} stage, {self.n_train:,} training and {self.n_test:,} "
                 f"test images:"]
        lines += [f"  {name}: {format_bytes(size)}" for name, size in self.parts if size > 0]
        if self.stages:
            lines.append("Peak of each stage: " + ", ".join(f"{name} {format_bytes(size)}"
                                                           for name, size in self.stages) + ".")
        lines.append("The run is refused before anything big is built when this peak is over the memory "
                     "budget or over the memory this machine has available.")
        return "\n".join(lines)


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


# ---------------------------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class _Sizes:
    """Counts the run will see. ``n``: training points; ``n_test``: evaluated test points;
    ``raw``: images of the loaded dataset (train + test); ``copied``: images copied by selection/cap;
    ``k``: classes; ``largest``: the largest class after the cap; ``chw``: (C, H, W)."""
    n: int
    n_test: int
    raw: int
    copied: int
    k: int
    largest: int
    chw: tuple[int, int, int]

    @property
    def d(self) -> int:
        c, h, w = self.chw
        return c * h * w


def _field(report: Any, name: str) -> Any:
    return report[name] if isinstance(report, Mapping) else getattr(report, name)


def _class_counts(config: DistillConfig, report: Any) -> tuple[list[int], list[int]]:
    """Train and test counts of the classes the run uses (unknown names are left to the run to reject)."""
    classes = [str(c) for c in _field(report, "classes")]
    train = [int(c) for c in _field(report, "train_counts")]
    test = [int(c) for c in _field(report, "test_counts")]
    if config.classes:
        picked = list(dict.fromkeys(classes.index(c) for c in config.classes if c in classes))
        train, test = [train[i] for i in picked], [test[i] for i in picked]
    return train, test


def _sizes(config: DistillConfig, report: Any, cap: int | None, ranks: int = 1) -> _Sizes:
    """The counts one process sees: with several ``ranks`` (torchrun) each holds about n/ranks of the
    training rows (the largest shard), while the test set and the loaded dataset stay whole."""
    train, test = _class_counts(config, report)
    all_train = [int(c) for c in _field(report, "train_counts")]
    all_test = [int(c) for c in _field(report, "test_counts")]
    capped = [min(c, cap) for c in train] if cap else train
    h, w, c = (int(s) for s in _field(report, "image_shape"))
    n, n_test = -(-sum(capped) // max(1, ranks)), sum(test)
    copied = (n + n_test if config.classes else 0) + (n if cap else 0)
    return _Sizes(n=n, n_test=min(n_test, MAX_EVAL_TEST), raw=sum(all_train) + sum(all_test),
                  copied=copied, k=max(1, len(train)), largest=max(capped, default=0), chw=(c, h, w))


# -------------------------------------------------------------------------------------- kernel facts
def feature_dim(kernel: Kernel, chw: tuple[int, int, int]) -> int | None:
    """Explicit feature dimension p (bias column included) of ``kernel`` on images (C, H, W), or
    ``None`` for kernels without explicit features (:meth:`Kernel.feature_dim`)."""
    return kernel.feature_dim(chw)


def _dense_call_bytes(kernel: Kernel, rows: int, n_b: int, chw, p: int | None, dtype: torch.dtype,
                      grad: bool, graph: bool) -> int:
    """Peak bytes of ``kernel(a, b)`` for ``rows`` × ``n_b`` pairs (output included). ``grad``: the
    grad mode (the kernels tile by it); ``graph``: an autograd graph is kept (every tile's saved
    arrays live until backward, whatever the tiling).

    Without a graph: the output, once more while several row tiles are concatenated, plus one tile of
    temporaries (``bytes_per_pair`` × tile rows × n_b) on top — glibc keeps freed tile memory in its
    heap, so the temporaries are not given back before the concatenation (measured for ``ntk-fc``
    at n = 1,000–6,000: 80, 278, 538, 906 MiB against 84, 317, 500, 805 MiB modelled)."""
    es = torch.empty((), dtype=dtype).element_size()
    out = rows * n_b * es
    if kernel.gram_from_features:     # φ(a) φ(b)ᵀ
        return kernel.feature_bytes(rows, chw, dtype, graph) + kernel.feature_bytes(n_b, chw, dtype, graph) + out
    if graph:
        return kernel.pair_bytes(chw, dtype, True) * rows * n_b + out
    tile = kernel.tile_rows_for(rows, n_b, chw, dtype, grad)
    temp = kernel.pair_bytes(chw, dtype, False) * tile * n_b      # no graph: no-grad temporaries
    return out * (2 if tile < rows else 1) + temp


# ---------------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class _Run:
    """What the model needs besides the sizes: the kernel, p, dtypes and devices."""
    config: DistillConfig
    kernel: Kernel
    p: int | None
    work_dtype: torch.dtype
    device: torch.device
    cdev: torch.device

    @property
    def work_bytes(self) -> int:
        return torch.empty((), dtype=self.work_dtype).element_size()

    @property
    def objective(self) -> Objective:
        """The run's objective (engine.objectives), whose cost model sizes the steps."""
        return make_objective(self.config, self.kernel)


def _step_shape(run: _Run, s: "_Sizes", teacher_rows: int) -> StepShape:
    return StepShape(n=s.n, k=s.k, m=run.config.ipc * s.k, chw=s.chw, teacher_rows=teacher_rows, p=run.p,
                     work_dtype=run.work_dtype)


def _pool(device: torch.device) -> str:
    """The physical memory a device draws on: "cuda" or host RAM (CPU and Apple's unified MPS)."""
    return "cuda" if device.type == "cuda" else "cpu"


def _plan(run: _Run, n: int, budget: int) -> tuple[bool, str, int]:
    """(fits, storage, operator bytes) under the engine's rule."""
    try:
        storage, size = operator_plan(n, explicit=run.kernel.explicit, p=run.p, element_size=CERT_BYTES,
                                      budget_bytes=budget,
                                      dense_if_fits=cd_hinge(make_loss(run.config.loss), run.cdev, torch.float64))
        return True, storage, size
    except ResourceError:
        return False, "dense", n * n * CERT_BYTES


@dataclass(frozen=True)
class _Nystrom:
    """A Nyström teacher plan: ``centres`` M, K(X, Z) kept in memory (``cache``) or recomputed per pass."""
    centres: int
    cache: bool = True


def _stages(run: _Run, s: _Sizes, storage: str, nys: _Nystrom | None = None
            ) -> list[tuple[str, list[tuple[str, str, int]]]]:
    """Stages of the run, each a list of (part, pool, bytes) alive at the stage's peak (``nys``: the
    Nyström plan when ``storage`` is "nystrom")."""
    cfg, kernel, p = run.config, run.kernel, run.p
    n, nt, d, k = s.n, s.n_test, s.d, s.k
    m = cfg.ipc * k
    ew = run.work_bytes
    host, cert, work = "cpu", _pool(run.cdev), _pool(run.device)
    zca = cfg.preprocess == "zca"

    data = [("dataset pixels (uint8)", host, (s.raw + s.copied) * d),
            ("ZCA matrices", host, 2 * d * d * 8 if zca else 0),
            ("train features (float32)", host, 4 * n * d),
            ("test features (float32)", host, 4 * nt * d),
            ("train images, float64 copy", cert, n * d * CERT_BYTES)]
    prep = max(5 * d * d * 8 + 2 * 4096 * d * 8 if zca else 0,          # covariance, eigh, whitening
               (3 if zca else 2) * 4 * n * d,                          # float32 transform temporaries
               3 * min(n, 1000) ** 2 * 8 if cfg.kernel == "rbf" else 0)  # median bandwidth
    stages = [("data", data + [("preprocessing temporaries", host, prep)])]

    # teacher: operator being built, then solved
    rows_of = n                                     # the rows the teacher keeps (its support or its centres)
    if storage == "nystrom":
        M = nys.centres
        rows_of = M
        if kernel.explicit:                         # φ(x_t) φ(Z)ᵀ per tile of FEATURE_ROWS rows, φ(Z) kept
            tile = min(n, FEATURE_ROWS)
            temp = (kernel.feature_bytes(tile, s.chw, torch.float64, False) + tile * M * CERT_BYTES
                    + M * p * CERT_BYTES)
        else:
            tile = kernel.tile_rows_for(n, M, s.chw, torch.float64, False)
            temp = _dense_call_bytes(kernel, tile, M, s.chw, p, torch.float64, False, False)
        build = (n * M * CERT_BYTES if nys.cache else 0) + temp
        teacher_parts = [("centres (float64)", cert, M * d * CERT_BYTES),
                         ("K(X, Z)" if nys.cache else "K(X, Z) tile", cert, build),
                         ("K(Z, Z), its Cholesky factors", cert, NYSTROM_SQUARES * M * M * CERT_BYTES),
                         ("solver arrays", cert, NYSTROM_ARRAYS * n * k * CERT_BYTES)]
    elif storage == "features":
        build = kernel.feature_bytes(n, s.chw, torch.float64, False)
    else:
        build = _dense_call_bytes(kernel, n, n, s.chw, p, torch.float64, False, False)
        if n >= HEAP_GROWTH_TILES * kernel.tile_rows_for(n, n, s.chw, torch.float64, False):
            build += n * n * CERT_BYTES // 2    # heap growth over many row tiles (see HEAP_GROWTH_TILES)
        if kernel.explicit:                     # features computed first, then p ≥ n: ΦΦᵀ as well
            build += n * p * CERT_BYTES
    if storage != "nystrom":
        teacher_parts = [("teacher kernel operator (building)", cert, build),
                         ("solver arrays", cert, SOLVER_ARRAYS * n * k * CERT_BYTES)]
        if storage == "dense" and cd_hinge(make_loss(cfg.loss), run.cdev, torch.float64):
            # the working-set solver's kernel rows, copied WORKING_SET at a time (engine.hinge_cd)
            teacher_parts.append(("coordinate-descent kernel rows", cert, min(WORKING_SET, n) * n * CERT_BYTES))
    explicit = kernel.explicit              # the teacher is w* (p × k) after its solve, whatever the storage
    kept_teacher = ([("teacher weights", cert, p * k * CERT_BYTES)] if explicit
                    else [("teacher support rows (float64)", cert, rows_of * d * CERT_BYTES)])
    kept_teacher.append(("teacher dual and scores", cert, 2 * n * k * CERT_BYTES))
    labels = ("training labels", cert, n * k * CERT_BYTES)
    stages.append(("teacher", data + [labels] + teacher_parts))

    # test set: teacher scores in blocks of SCORE_ROWS rows, k(x, x)
    rows = min(SCORE_ROWS, nt)
    if explicit:
        block = kernel.feature_bytes(rows, s.chw, torch.float64, False)
    else:
        block = _dense_call_bytes(kernel, rows, rows_of, s.chw, p, torch.float64, True, False)
    test = [("test images, float64", cert, nt * d * CERT_BYTES), ("test scores and k(x, x)", cert, 2 * nt * k * 8)]
    if explicit:              # φ(x_test) kept for every later prediction (engine.certify.TestPoints)
        test.append(("test features", cert, nt * p * CERT_BYTES))
        temporaries = block + nt * p * CERT_BYTES          # one tile's work, and the tiles before their concatenation
    else:
        temporaries = max(block, kernel.diag_bytes(nt, s.chw)) + 4 * nt * d
    stages.append(("test set", data + [labels] + kept_teacher + test + [
        ("test kernel rows / k(x, x)", cert, temporaries)]))

    # distillation: the teacher in the work dtype, KIP's working copy, one step's autograd graph
    same = run.work_dtype == torch.float64 and run.device == run.cdev
    cast = 0 if same else (p * k if explicit else rows_of * (d + k)) * ew
    alive = data + [labels] + kept_teacher + test + [("teacher, work-dtype copy", work, cast)]
    objective, z = run.objective, _step_shape(run, s, rows_of)
    cache = objective.cache_parts(z)      # e.g. KIP's φ(x_train), computed once in tiles, then concatenated
    if cache:
        stages.append(("KIP feature cache", alive + [(name, work, size) for name, size in cache]))
    alive += [(name, work, size) for name, size in objective.working_parts(z)]
    graph = objective.graph_bytes(z)
    kmeans = 3 * s.largest * d * 4 if cfg.init == "kmeans" and not cfg.init_from else 0
    stages.append(("distillation step", alive + [("step autograd graph", work, max(graph, kmeans))]))

    # certificate: k(x̃, x_teacher) in float64, predictions on the test points
    if explicit:
        cert_peak = 2 * kernel.feature_bytes(m, s.chw, torch.float64, False)
    else:
        cert_peak = _dense_call_bytes(kernel, m, rows_of, s.chw, p, torch.float64, False, False)
    cert_peak += 3 * m * m * 8 + 2 * min(PREDICT_ROWS, nt) * m * 8
    stages.append(("certificate", alive + [("certificate kernel rows", cert, cert_peak)]))
    if storage == "nystrom" and cfg.certify_exact:      # one tiled pass over the n × n kernel (never stored)
        if explicit:
            full = kernel.feature_bytes(min(n, FEATURE_ROWS), s.chw, torch.float64, False) + p * k * CERT_BYTES
        else:
            tile = kernel.tile_rows_for(n, n, s.chw, torch.float64, False)
            full = _dense_call_bytes(kernel, tile, n, s.chw, p, torch.float64, False, False)
        stages.append(("exact certificate", alive + [("full kernel row tile", cert, full),
                                                     ("teacher scores and dual on x_train", cert, 3 * n * k * CERT_BYTES)]))
    return stages


@dataclass(frozen=True)
class _Peak:
    """The model's answer for one size: ``total`` bytes at stage ``stage`` (its ``parts``), the peak of
    each memory pool (``pools``) and of each stage (``stages``)."""
    total: int
    stage: str
    parts: tuple[tuple[str, int], ...]
    pools: dict[str, int]
    stages: tuple[tuple[str, int], ...]


def _peak(stages) -> _Peak:
    best, pools, totals = None, {}, []
    for name, parts in stages:
        total = sum(size for _, _, size in parts)
        totals.append((name, int(total)))
        for pool in {pool for _, pool, _ in parts}:
            pools[pool] = max(pools.get(pool, 0), sum(sz for _, pl, sz in parts if pl == pool))
        if best is None or total > best[0]:
            merged: dict[str, int] = {}
            for part, _, size in parts:
                merged[part] = merged.get(part, 0) + int(size)
            best = (int(total), name, tuple(merged.items()))
    return _Peak(best[0], best[1], best[2], pools, tuple(totals))


def available_bytes(pool: str, device: torch.device | None = None) -> int | None:
    """Memory this machine can give a run *now*: host RAM's ``MemAvailable`` (/proc/meminfo; else
    ``os.sysconf`` available pages) for "cpu", the free memory of the CUDA device
    (``torch.cuda.mem_get_info``) for "cuda"; ``None`` where unknown (then only the budget limits)."""
    if pool == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device if device is not None and device.type == "cuda"
                                               else None)[0])
        except Exception:  # noqa: BLE001 - unknown: the budget alone limits the run
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_AVPHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


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


def _seconds(run: _Run, s: _Sizes, storage: str, nys: _Nystrom | None = None) -> dict[str, float]:
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
    # step_timing.MAX_ROWS rows (engine.step_timing), plus the modelled cost of the rows beyond those
    objective, z = run.objective, _step_shape(run, s, rows_of)
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


def _two_figures(seconds: float) -> float:
    """Round to two significant figures (one figure alone is up to 1.4× off: 14 s would read 10 s)."""
    if seconds <= 0:
        return 0.0
    return float(f"{seconds:.2g}")


# --------------------------------------------------------------------------------------- the answer
def _round_up(x: float, figures: int = 2) -> float:
    """``x`` rounded *up* to ``figures`` significant figures (budgets we suggest must suffice)."""
    if x <= 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(x)) - figures + 1)
    return math.ceil(x / scale - 1e-9) * scale


def _largest_cap(ok: Callable[[int], bool], low: int, high: int) -> int | None:
    """The largest cap in [low, high] with ``ok(cap)`` (``ok`` is monotone: true up to some cap)."""
    if high < low or not ok(low):
        return None
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if ok(mid) else (low, mid - 1)
    return low


def _gib(nbytes: float) -> str:
    """``nbytes`` as a ``memory_budget_gb`` value (two significant figures, rounded up) that, read back
    as the run reads it (``int(gb * 2**30)``), is never below ``nbytes``."""
    value = _round_up(nbytes / 2**30)
    step = 10 ** (math.floor(math.log10(value)) - 1) if value > 0 else 1e-9
    while int(float(f"{value:.10g}") * 2**30) < nbytes:
        value += step
    return f"{value:.10g}"


@dataclass(frozen=True)
class _Answer:
    """The model for one run at one size: sizes, the teacher rule, the operator, the peaks; ``nys``:
    the Nyström plan when the teacher is Nyström; ``reason``: why this teacher, in words."""
    sizes: _Sizes
    teacher_ok: bool
    storage: str
    operator_bytes: int
    peak: _Peak
    nys: _Nystrom | None = None
    reason: str = ""


def _nystrom_answer(run: _Run, s: _Sizes, nys: _Nystrom, reason: str = "") -> _Answer:
    return _Answer(s, True, "nystrom", s.n * nys.centres * CERT_BYTES if nys.cache else 0,
                   _peak(_stages(run, s, "nystrom", nys)), nys, reason)


def _answer(run: _Run, report: Any, cap: int | None, budget: int, ranks: int = 1) -> _Answer:
    """The teacher plan and its model (module doc): exact when asked for, or when ``auto`` and the
    whole run fits ``budget`` with it; else Nyström with ``centres`` (K(X, Z) recomputed per pass
    when only that fits) or, by default, the largest M whose run fits with K(X, Z) cached."""
    cfg = run.config
    s = _sizes(cfg, report, cap, ranks)
    if ranks > 1 and cfg.teacher != "nystrom":
        why = f"the teacher that {ranks} processes share"
    elif cfg.teacher != "nystrom":
        teacher_ok, storage, op_bytes = _plan(run, s.n, budget)
        exact = _Answer(s, teacher_ok, storage, op_bytes, _peak(_stages(run, s, storage)))
        fits_budget = teacher_ok and exact.peak.total <= budget
        if cfg.teacher == "exact" or fits_budget:
            why = ("exact teacher: chosen in the settings" if cfg.teacher == "exact" else
                   f"exact teacher: the run with all {s.n:,} images fits the memory budget")
            return dataclasses.replace(exact, reason=why)
        why = (f"the exact teacher's run would need {format_bytes(exact.peak.total)}, over the memory budget of "
               f"{format_bytes(budget)}")
    else:
        why = "Nyström teacher chosen in the settings"
    if cfg.centres:
        nys = _Nystrom(min(cfg.centres, s.n))
        a = _nystrom_answer(run, s, nys)
        if a.peak.total > budget:
            b = _nystrom_answer(run, s, _Nystrom(nys.centres, cache=False))
            a = b if b.peak.total <= budget else a
        how = "" if a.nys.cache else "; K(X, Z) recomputed in every pass (caching it would exceed the budget)"
        return dataclasses.replace(a, reason=f"Nyström teacher with {nys.centres:,} centres ({why}{how})")
    low = min(s.n, max(2, s.k))
    best = _largest_cap(lambda M: _nystrom_answer(run, s, _Nystrom(M)).peak.total <= budget, low, s.n) or low
    return _nystrom_answer(run, s, _Nystrom(best), f"Nyström teacher with {best:,} centres, the most whose run fits "
                                                    f"the memory budget ({why})")


def _fits(a: _Answer, budget: int, available: Mapping[str, int | None]) -> bool:
    """THE rule (``RunEstimate.fits`` and the run's refusal): the teacher's operator is allowed
    (:func:`engine.operators.operator_plan`), the peak over all stages is within the budget, and no
    memory pool's peak is over what the machine has available."""
    return (a.teacher_ok and a.peak.total <= budget
            and all(free is None or a.peak.pools.get(pool, 0) <= free for pool, free in available.items()))


_POOL_NAMES = {"cpu": "memory (RAM)", "cuda": "GPU memory"}


def _make_run(cfg: DistillConfig, chw: tuple[int, int, int], device: torch.device) -> _Run:
    kernel = make_kernel(cfg.kernel, **cfg.kernel_params)
    return _Run(cfg, kernel, feature_dim(kernel, chw), resolve_dtype(cfg.dtype), device, certificate_device(device))


def estimate_run(config: DistillConfig, report: Any, ranks: int = 1, with_time: bool = True) -> RunEstimate:
    """Estimate memory and time of ``run(config)`` on the dataset described by ``report`` (a
    :class:`engine.data.DatasetReport` or the mapping ``Dataset.describe()`` returns: ``classes``,
    ``train_counts``, ``test_counts``, ``image_shape`` (H, W, C)).

    Raises :class:`ConfigError` for an invalid config or an unavailable device and ``ValueError`` for
    kernel parameters the kernel rejects — exactly what the run would raise. With ``ranks`` > 1
    (torchrun) memory and time are per process: each holds n/ranks training rows of the Nyström
    teacher (the only teacher that is sharded).

    The time hint (``with_time``, CPU runs that fit) measures a few real steps first
    (:mod:`engine.step_timing`: 0.05–5 s once per setting that changes a step's work); without it the
    answer is immediate and ``seconds_hint`` is ``None``."""
    return _estimate(config, report, with_time=with_time, ranks=ranks)


def check_run(config: DistillConfig, report: Any, ranks: int = 1) -> RunEstimate:
    """The run's refusal (called by :func:`engine.distill.run` before any kernel is built): the
    estimate (without the time hint) when it fits, else :class:`ResourceError` with its message —
    the same decision as :attr:`RunEstimate.fits`."""
    estimate = _estimate(config, report, with_time=False, ranks=ranks)
    if not estimate.fits:
        raise ResourceError(estimate.message)
    return estimate


def _estimate(config: DistillConfig, report: Any, with_time: bool, ranks: int = 1) -> RunEstimate:
    cfg = config.validate()
    try:
        device = resolve_device(cfg.device)
    except RuntimeError as exc:
        raise ConfigError("device", str(exc)) from None
    h, w, c = (int(v) for v in _field(report, "image_shape"))
    chw = (c, h, w)
    run = _make_run(cfg, chw, device)
    budget = int(cfg.memory_budget_gb * 2**30)
    available = {pool: available_bytes(pool, device) for pool in dict.fromkeys(("cpu", _pool(device), _pool(run.cdev)))}
    limit = min([budget] + [free for free in available.values() if free is not None])

    a = _answer(run, report, cfg.max_per_class, budget, ranks)
    fits = _fits(a, budget, available)
    s, pk = a.sizes, a.peak
    notes: list[str] = []
    changes: tuple[tuple[str, dict[str, Any]], ...] = ()
    if not fits:
        refusal, changes = _refusal(run, report, a, budget, available, chw, device)
        notes.append(refusal)
    else:
        text = f"Fits the memory budget of {format_bytes(budget)}"
        for pool, free in available.items():
            if free is not None and free < budget and pk.pools.get(pool, 0) > 0:
                text += f" and the {format_bytes(free)} of {_POOL_NAMES[pool]} available now"
        notes.append(text)

    seconds = (_two_figures(sum(_seconds(run, s, a.storage, a.nys).values()))
               if with_time and device.type == "cpu" and fits else None)
    return RunEstimate(memory_bytes=int(pk.total), seconds_hint=seconds, fits=fits, message=" ".join(notes),
                       n_train=s.n, n_test=s.n_test, storage=a.storage, operator_bytes=int(a.operator_bytes),
                       budget_bytes=budget, peak_stage=pk.stage, parts=pk.parts, device=device.type,
                       stages=pk.stages, limit_bytes=int(limit),
                       teacher="nystrom" if a.nys is not None else "exact",
                       centres=None if a.nys is None else a.nys.centres, teacher_reason=a.reason,
                       nystrom_cache=True if a.nys is None else a.nys.cache, changes=changes, ranks=ranks)


def _refusal(run: _Run, report: Any, a: _Answer, budget: int, available: Mapping[str, int | None],
             chw: tuple[int, int, int], device: torch.device) -> tuple[str, tuple[tuple[str, dict[str, Any]], ...]]:
    """Why the run does not fit (what it needs, per stage) and the alternatives, each checked by the
    model: the largest max_per_class that fits, a smaller ipc, an explicit-feature kernel, the budget;
    with the alternatives as (label, config changes) pairs (:attr:`RunEstimate.changes`)."""
    cfg = run.config
    s, pk = a.sizes, a.peak
    train, _ = _class_counts(cfg, report)
    current_cap = min(cfg.max_per_class or max(train, default=0), max(train, default=0))

    def images(cap: int) -> str:
        return f"{_sizes(cfg, report, cap).n:,} training images"

    # what it needs
    storage = (f"{s.n:,} × {s.n:,} dense" if a.storage == "dense"
               else f"Nyström {s.n:,} × {a.nys.centres:,} K(X, Z)" if a.storage == "nystrom"
               else f"{s.n:,} × {run.p:,} features")
    over: list[str] = []
    if pk.total > budget:
        over.append(f"the memory budget of {format_bytes(budget)}")
    short = [(pool, free) for pool, free in available.items()
             if free is not None and pk.pools.get(pool, 0) > free]
    for pool, free in short:
        mine = pk.pools[pool]
        over.append(f"the {format_bytes(free)} of {_POOL_NAMES[pool]} this machine has available now"
                    + (f" (its share: {format_bytes(mine)})" if mine != pk.total else ""))
    top = sorted(((size, name) for name, size in pk.parts if size > 0), reverse=True)[:2]
    if not a.teacher_ok:
        text = (f"Will not fit: the teacher's {s.n:,} × {s.n:,} kernel matrix needs "
                f"{format_bytes(a.operator_bytes)} (float64), over the memory budget of {format_bytes(budget)} "
                f"(at most {max_dense_points(CERT_BYTES, budget):,} training images fit); the whole run needs "
                f"about {format_bytes(pk.total)} at its peak, in the {pk.stage} stage, over {' and '.join(over)}.")
    else:
        text = (f"Will not fit: the run needs about {format_bytes(pk.total)} at its peak, in the {pk.stage} "
                f"stage ({', '.join(f'{name} {format_bytes(size)}' for size, name in top)}; teacher kernel "
                f"{storage}, {format_bytes(a.operator_bytes)}), over {' and '.join(over)}.")
    text += " Peak of each stage: " + ", ".join(f"{name} {format_bytes(size)}" for name, size in pk.stages) + "."

    # the alternatives, each one checked by the model
    found = _alternatives(run, report, budget, available, current_cap, chw, device, images)
    advice = [change for change, _, _ in found]
    changes = [button for _, _, button in found]
    if not short:
        advice.append(f"raise memory_budget_gb to at least {_gib(pk.total)}")
        changes.append((f"Raise the memory budget to {_gib(pk.total)} GiB", {"memory_budget_gb": float(_gib(pk.total))}))
    else:                   # the machine cannot give the peak: raising the budget alone does not help
        if not advice:      # nothing fits the budget: what fits this machine, with the budget it needs
            found = _alternatives(run, report, 2**62, available, current_cap, chw, device, images)
            advice = [f"raise memory_budget_gb to at least {_gib(peak)} and {change}" for change, peak, _ in found]
            changes = [(f"{label}, budget {_gib(peak)} GiB", {**fields, "memory_budget_gb": float(_gib(peak))})
                       for _, peak, (label, fields) in found]
        advice.append(f"run it where more {' and '.join(_POOL_NAMES[p] for p, _ in short)} is free "
                      f"(raising memory_budget_gb alone does not help on this machine)")
    return text + " " + _join(advice) + ".", tuple(changes)


def _alternatives(run: _Run, report: Any, budget: int, available: Mapping[str, int | None], current_cap: int,
                  chw: tuple[int, int, int], device: torch.device, images: Callable[[int], str]
                  ) -> list[tuple[str, int, tuple[str, dict[str, Any]]]]:
    """(advice, its peak bytes, (button label, config changes)) for each change that makes the run fit
    ``budget`` and the machine:
    the largest max_per_class below the current one, the largest smaller ipc (or ipc and
    max_per_class together when neither alone does), and rf-fc / rf-conv (at the current cap, else
    at the largest cap they allow when that beats the current kernel's)."""
    cfg = run.config
    out: list[tuple[str, int, tuple[str, dict[str, Any]]]] = []

    def fits(r: _Run, cap: int | None) -> _Answer | None:
        a = _answer(r, report, cap, budget)
        return a if _fits(a, budget, available) else None

    def largest_cap(r: _Run) -> int | None:
        """The largest per-class cap below the current one (and ≥ ipc) at which ``r`` fits."""
        return _largest_cap(lambda x: fits(r, x) is not None, r.config.ipc, current_cap - 1)

    def with_ipc(i: int) -> _Run:
        return dataclasses.replace(run, config=cfg.replace(ipc=i))

    cap = largest_cap(run)
    if cap:
        out.append((f"lower max_per_class to {cap} ({images(cap)})", fits(run, cap).peak.total,
                    (f"Cap at {cap:,} per class", {"max_per_class": cap})))
    ipc = _largest_cap(lambda i: fits(with_ipc(i), cfg.max_per_class) is not None, 1, cfg.ipc - 1)
    if ipc:
        out.append((f"lower ipc to {ipc} (the distillation step's kernel graph grows with ipc × n)",
                    fits(with_ipc(ipc), cfg.max_per_class).peak.total, (f"Use {ipc} per class", {"ipc": ipc})))
    elif not cap and cfg.ipc > 1:               # neither alone: ipc and max_per_class together
        top = _largest_cap(lambda i: largest_cap(with_ipc(i)) is not None, 1, cfg.ipc - 1)
        if top:
            pairs = [(i, largest_cap(with_ipc(i))) for i in dict.fromkeys((top, 1))]
            peak = max(fits(with_ipc(i), c).peak.total for i, c in pairs)
            out.append(("lower ipc and max_per_class together (" + ", or ".join(
                f"ipc {i} with max_per_class {c}, {images(c)}" for i, c in pairs) + ")", peak,
                (f"Use {pairs[0][0]} per class, cap at {pairs[0][1]:,}", {"ipc": pairs[0][0], "max_per_class": pairs[0][1]})))
    if cfg.teacher == "exact":                   # the Nyström teacher with the most centres that fit
        auto = _answer(dataclasses.replace(run, config=cfg.replace(teacher="auto")), report, cfg.max_per_class, budget)
        if _fits(auto, budget, available) and auto.nys is not None:
            out.append((f"set teacher to auto (a Nyström teacher with {auto.nys.centres:,} centres on all "
                        f"{images(current_cap)}: about {format_bytes(auto.peak.total)} at its peak)", auto.peak.total,
                        (f"Use a Nyström teacher ({auto.nys.centres:,} centres)", {"teacher": "auto"})))
    for name in ("rf-fc", "rf-conv"):
        if name == cfg.kernel:
            continue
        try:
            other = _make_run(cfg.replace(kernel=name, kernel_params={}), chw, device)
        except (ValueError, ConfigError):                        # e.g. rf-conv on images too small
            continue
        what = f"use {name} (explicit features, {other.p:,} per image"
        b = fits(other, cfg.max_per_class)
        if b is not None:
            out.append((f"{what}: about {format_bytes(b.peak.total)} at its peak)", b.peak.total,
                        (f"Use {name}", {"kernel": name, "kernel_params": {}})))
            continue
        cap_other = largest_cap(other)
        if cap_other and (cap is None or cap_other > cap):
            out.append((f"{what}) with max_per_class {cap_other} ({images(cap_other)})",
                        fits(other, cap_other).peak.total,
                        (f"Use {name}, cap at {cap_other:,} per class",
                         {"kernel": name, "kernel_params": {}, "max_per_class": cap_other})))
    return out


def _join(items: list[str]) -> str:
    """["a", "b", "c"] → "A, b, or c" (first letter capitalised)."""
    text = items[0] if len(items) == 1 else ", ".join(items[:-1]) + ", or " + items[-1]
    return text[:1].upper() + text[1:]
