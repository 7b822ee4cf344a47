"""The memory model of a run and its teacher plan (engine.plan).

``memory_bytes`` is the modelled *peak* of the run's own allocations (not the interpreter and libraries,
≈ 0.3–0.5 GiB), the largest of these stages, each counting everything alive at that moment:

- data: the loaded uint8 dataset (+ the copy class selection / the cap makes), the float32 train and
  evaluation-test features (N, H, W, C), the float64 certificate copy of x_train (n·d·8) on the
  certificate device, ZCA matrices (2·d²·8) and the preprocessing temporaries;
- teacher: the kernel operator while it is built — dense n²·8, allocated whole and filled in row tiles,
  plus ``BUILD_TILES`` tiles with their temporaries (``bytes_per_pair`` × rows × n) and ``BUILD_PACKED``
  of BLAS's packed copies of the rows (n·d·8); ΦΦᵀ from explicit features: the features, K and its concatenated tiles;
  features 3·n·p·8 (tile list, concatenations) plus one tile of temporaries — plus ≈ 20 (n, C) float64
  solver arrays;
- test set: the teacher (its support rows x[keep], a copy: n·d·8; or weights p·C), the float64
  evaluation points (≤ ``MAX_EVAL_TEST``), one 2048-row block of test-kernel rows (2048 × n) with its
  tile temporaries, and k(x, x) on the test points (conv kernels: per-pixel maps, 16 arrays);
- distill step: the autograd graph of k(x̃, x_teacher) (m × n pairs at the kernel's own
  ``bytes_per_pair`` under autograd — for conv kernels H·W·(12 + 17·depth) or (16 + 20·depth) arrays
  per pair: the per-position covariance cost — kept alive by backward whatever the tiling), plus the
  work-dtype copy of the teacher and, for KIP, of x_train and a ``kip_batch`` of rows;
- certificate: k(x̃, x_teacher) in float64 without autograd, plus the test-set predictions.


Kernel-specific sizes come from the kernel's cost methods (engine.kernels.base), the distillation
step's from the run's objective (engine.objectives).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import torch

from engine.certify import MAX_EVAL_TEST
from engine.config import DistillConfig
from engine.data.report import format_bytes
from engine.device import certificate_device, resolve_dtype
from engine.hinge_cd import WORKING_SET
from engine.kernels import Kernel, make_kernel
from engine.losses import make_loss
from engine.nystrom import FEATURE_ROWS
from engine.objectives import Objective, StepShape, make_objective
from engine.operators import ResourceError, build_tile_rows, operator_plan
from engine.solver import cd_hinge
from engine.tensors import ROW_TILE

CERT_BYTES = 8                                                             # float64 teacher and certificates
SCORE_ROWS = PREDICT_ROWS = ROW_TILE    # test rows per block of teacher scores and of predictions (engine.tensors)
SOLVER_ARRAYS = 20          # (n, C) float64 arrays alive in the Newton-CG teacher solver (counted in solver.py)
NYSTROM_ARRAYS = 8          # (n, C) float64 arrays alive in the Nyström solver (Y, f, α, Δf, trial f, ...)
NYSTROM_SQUARES = 6         # (M, M) float64 arrays: K_ZZ, its jittered copy, L, LᵀL, A and a temporary
# cross-entropy on all of MNIST at λ 1e-5 (M = 1,000 to 10,000); hinge (Huber continuation): an order of magnitude
# from the sample digits (hundreds to thousands of passes), not measured on whole datasets
# The dense teacher's K is allocated whole and filled in row tiles (engine.operators.build_operator_iter):
# K, two tiles with their temporaries (the one being built and the last, which the allocator may keep),
# and BLAS's packed copies of the n × d rows, one a tile: under glibc's 32 MiB mmap threshold
# (n·d·8 < 32 MiB) freed copies stay in its heap, so up to BUILD_PACKED are counted. Build alone,
# float64 ntk-fc, d = 784, 2 threads, peak RSS over the start against the model (MiB): n = 3,000 89
# against 128; 4,000 150–183 / 204; 4,500 220 / 248; 5,000 239–274 / 296; 6,000 331 / 404; 8,000 552 /
# 671; 12,000 1,187 / 1,402. On an H200, all of MNIST (n = 60,000): 27.8 GiB allocated at the run's
# peak against 29.6 GiB modelled at the teacher stage (the model of concatenated tiles it replaces,
# 2·K plus half of K of heap growth, said 68.0).
BUILD_TILES, BUILD_PACKED = 2, 3


# ---------------------------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class Sizes:
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


def report_field(report: Any, name: str) -> Any:
    return report[name] if isinstance(report, Mapping) else getattr(report, name)


def class_counts(config: DistillConfig, report: Any) -> tuple[list[int], list[int]]:
    """Train and test counts of the classes the run uses (unknown names are left to the run to reject)."""
    classes = [str(c) for c in report_field(report, "classes")]
    train = [int(c) for c in report_field(report, "train_counts")]
    test = [int(c) for c in report_field(report, "test_counts")]
    if config.classes:
        picked = list(dict.fromkeys(classes.index(c) for c in config.classes if c in classes))
        train, test = [train[i] for i in picked], [test[i] for i in picked]
    return train, test


def count_sizes(config: DistillConfig, report: Any, cap: int | None, ranks: int = 1) -> Sizes:
    """The counts one process sees: with several ``ranks`` (torchrun) each holds about n/ranks of the
    training rows (the largest shard), while the test set and the loaded dataset stay whole."""
    train, test = class_counts(config, report)
    all_train = [int(c) for c in report_field(report, "train_counts")]
    all_test = [int(c) for c in report_field(report, "test_counts")]
    capped = [min(c, cap) for c in train] if cap else train
    h, w, c = (int(s) for s in report_field(report, "image_shape"))
    n, n_test = -(-sum(capped) // max(1, ranks)), sum(test)
    copied = (n + n_test if config.classes else 0) + (n if cap else 0)
    return Sizes(n=n, n_test=min(n_test, MAX_EVAL_TEST), raw=sum(all_train) + sum(all_test),
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
class Run:
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


def step_shape(run: Run, s: "Sizes", teacher_rows: int) -> StepShape:
    return StepShape(n=s.n, k=s.k, m=run.config.ipc * s.k, chw=s.chw, teacher_rows=teacher_rows, p=run.p,
                     work_dtype=run.work_dtype)


def pool_of(device: torch.device) -> str:
    """The physical memory a device draws on: "cuda" or host RAM (CPU and Apple's unified MPS)."""
    return "cuda" if device.type == "cuda" else "cpu"


def _plan(run: Run, n: int, budget: int) -> tuple[bool, str, int]:
    """(fits, storage, operator bytes) under the engine's rule."""
    try:
        storage, size = operator_plan(n, explicit=run.kernel.explicit, p=run.p, element_size=CERT_BYTES,
                                      budget_bytes=budget,
                                      dense_if_fits=cd_hinge(make_loss(run.config.loss), run.cdev, torch.float64))
        return True, storage, size
    except ResourceError:
        return False, "dense", n * n * CERT_BYTES


@dataclass(frozen=True)
class Nystrom:
    """A Nyström teacher plan: ``centres`` M, K(X, Z) kept in memory (``cache``) or recomputed per pass."""
    centres: int
    cache: bool = True


def _data_parts(run: Run, s: Sizes) -> tuple[list[tuple[str, str, int]], int]:
    """What the loaded data keeps alive for the whole run, as (part, pool, bytes), and the peak of the
    preprocessing temporaries (bytes)."""
    cfg, n, nt, d = run.config, s.n, s.n_test, s.d
    zca = cfg.preprocess == "zca"
    data = [("dataset pixels (uint8)", "cpu", (s.raw + s.copied) * d),
            ("ZCA matrices", "cpu", 2 * d * d * 8 if zca else 0),
            ("train features (float32)", "cpu", 4 * n * d),
            ("test features (float32)", "cpu", 4 * nt * d),
            ("train images, float64 copy", pool_of(run.cdev), n * d * CERT_BYTES)]
    prep = max(5 * d * d * 8 + 2 * 4096 * d * 8 if zca else 0,          # covariance, eigh, whitening
               (3 if zca else 2) * 4 * n * d,                          # float32 transform temporaries
               3 * min(n, 1000) ** 2 * 8 if cfg.kernel == "rbf" else 0)  # median bandwidth
    return data, prep


def _teacher_parts(run: Run, s: Sizes, storage: str, nys: Nystrom | None) -> list[tuple[str, str, int]]:
    """The teacher's operator while it is built and the solver's arrays, as (part, pool, bytes)."""
    kernel, p, n, d, k = run.kernel, run.p, s.n, s.d, s.k
    cert = pool_of(run.cdev)
    if storage == "nystrom":
        M = nys.centres
        if kernel.explicit:                         # φ(x_t) φ(Z)ᵀ per tile of FEATURE_ROWS rows, φ(Z) kept
            tile = min(n, FEATURE_ROWS)
            temp = (kernel.feature_bytes(tile, s.chw, torch.float64, False) + tile * M * CERT_BYTES
                    + M * p * CERT_BYTES)
        else:
            tile = kernel.tile_rows_for(n, M, s.chw, torch.float64, False)
            temp = _dense_call_bytes(kernel, tile, M, s.chw, p, torch.float64, False, False)
        build = (n * M * CERT_BYTES if nys.cache else 0) + temp
        return [("centres (float64)", cert, M * d * CERT_BYTES),
                ("K(X, Z)" if nys.cache else "K(X, Z) tile", cert, build),
                ("K(Z, Z), its Cholesky factors", cert, NYSTROM_SQUARES * M * M * CERT_BYTES),
                ("solver arrays", cert, NYSTROM_ARRAYS * n * k * CERT_BYTES)]
    if storage == "features":
        build = kernel.feature_bytes(n, s.chw, torch.float64, False)
    else:
        if kernel.explicit:                     # features computed first, then p ≥ n: ΦΦᵀ as well
            build = _dense_call_bytes(kernel, n, n, s.chw, p, torch.float64, False, False) + n * p * CERT_BYTES
        else:                                   # K filled in row tiles (see BUILD_TILES)
            rows = build_tile_rows(n, kernel.tile_rows_for(n, n, s.chw, torch.float64, False))
            build = (n * n * CERT_BYTES + BUILD_PACKED * n * d * CERT_BYTES
                     + BUILD_TILES * _dense_call_bytes(kernel, rows, n, s.chw, p, torch.float64, False, False))
    parts = [("teacher kernel operator (building)", cert, build),
             ("solver arrays", cert, SOLVER_ARRAYS * n * k * CERT_BYTES)]
    if storage == "dense" and cd_hinge(make_loss(run.config.loss), run.cdev, torch.float64):
        # the working-set solver's kernel rows, copied WORKING_SET at a time (engine.hinge_cd)
        parts.append(("coordinate-descent kernel rows", cert, min(WORKING_SET, n) * n * CERT_BYTES))
    return parts


def _stages(run: Run, s: Sizes, storage: str, nys: Nystrom | None = None
            ) -> list[tuple[str, list[tuple[str, str, int]]]]:
    """Stages of the run, each a list of (part, pool, bytes) alive at the stage's peak (``nys``: the
    Nyström plan when ``storage`` is "nystrom")."""
    cfg, kernel, p = run.config, run.kernel, run.p
    n, nt, d, k = s.n, s.n_test, s.d, s.k
    m = cfg.ipc * k
    cert, work = pool_of(run.cdev), pool_of(run.device)
    data, prep = _data_parts(run, s)
    stages = [("data", data + [("preprocessing temporaries", "cpu", prep)])]

    # teacher: operator being built, then solved; it keeps its support rows or centres, or w* (p × k)
    rows_of = nys.centres if storage == "nystrom" else n
    explicit = kernel.explicit
    kept_teacher = ([("teacher weights", cert, p * k * CERT_BYTES)] if explicit
                    else [("teacher support rows (float64)", cert, rows_of * d * CERT_BYTES)])
    kept_teacher.append(("teacher dual and scores", cert, 2 * n * k * CERT_BYTES))
    labels = ("training labels", cert, n * k * CERT_BYTES)
    stages.append(("teacher", data + [labels] + _teacher_parts(run, s, storage, nys)))

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

    # distillation: the teacher in the work dtype, the objective's working data, one step's autograd graph
    same = run.work_dtype == torch.float64 and run.device == run.cdev
    cast = 0 if same else (p * k if explicit else rows_of * (d + k)) * run.work_bytes
    alive = data + [labels] + kept_teacher + test + [("teacher, work-dtype copy", work, cast)]
    objective, z = run.objective, step_shape(run, s, rows_of)
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


def largest_cap(ok: Callable[[int], bool], low: int, high: int) -> int | None:
    """The largest cap in [low, high] with ``ok(cap)`` (``ok`` is monotone: true up to some cap)."""
    if high < low or not ok(low):
        return None
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if ok(mid) else (low, mid - 1)
    return low


@dataclass(frozen=True)
class Answer:
    """The model for one run at one size: sizes, the teacher rule, the operator, the peaks; ``nys``:
    the Nyström plan when the teacher is Nyström; ``reason``: why this teacher, in words."""
    sizes: Sizes
    teacher_ok: bool
    storage: str
    operator_bytes: int
    peak: _Peak
    nys: Nystrom | None = None
    reason: str = ""


def nystrom_answer(run: Run, s: Sizes, nys: Nystrom, reason: str = "") -> Answer:
    return Answer(s, True, "nystrom", s.n * nys.centres * CERT_BYTES if nys.cache else 0,
                   _peak(_stages(run, s, "nystrom", nys)), nys, reason)


def answer(run: Run, report: Any, cap: int | None, budget: int, ranks: int = 1) -> Answer:
    """The teacher plan and its model (module doc): exact when asked for, or when ``auto`` and the
    whole run fits ``budget`` with it; else Nyström with ``centres`` (K(X, Z) recomputed per pass
    when only that fits) or, by default, the largest M whose run fits with K(X, Z) cached."""
    cfg = run.config
    s = count_sizes(cfg, report, cap, ranks)
    if ranks > 1 and cfg.teacher != "nystrom":
        why = f"the teacher that {ranks} processes share"
    elif cfg.teacher != "nystrom":
        teacher_ok, storage, op_bytes = _plan(run, s.n, budget)
        exact = Answer(s, teacher_ok, storage, op_bytes, _peak(_stages(run, s, storage)))
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
        nys = Nystrom(min(cfg.centres, s.n))
        a = nystrom_answer(run, s, nys)
        if a.peak.total > budget:
            b = nystrom_answer(run, s, Nystrom(nys.centres, cache=False))
            a = b if b.peak.total <= budget else a
        how = "" if a.nys.cache else "; K(X, Z) recomputed in every pass (caching it would exceed the budget)"
        capped = (f"; {cfg.centres:,} asked for, at most the {s.n:,} training images" if cfg.centres > s.n
                  else "")
        return dataclasses.replace(a, reason=f"Nyström teacher with {nys.centres:,} centres ({why}{capped}{how})")
    low = min(s.n, max(2, s.k))
    best = largest_cap(lambda M: nystrom_answer(run, s, Nystrom(M)).peak.total <= budget, low, s.n) or low
    return nystrom_answer(run, s, Nystrom(best), f"Nyström teacher with {best:,} centres, the most whose run fits "
                                                    f"the memory budget ({why})")


def fits_rule(a: Answer, budget: int, available: Mapping[str, int | None]) -> bool:
    """THE rule (``RunEstimate.fits`` and the run's refusal): the teacher's operator is allowed
    (:func:`engine.operators.operator_plan`), the peak over all stages is within the budget, and no
    memory pool's peak is over what the machine has available."""
    return (a.teacher_ok and a.peak.total <= budget
            and all(free is None or a.peak.pools.get(pool, 0) <= free for pool, free in available.items()))


def make_run(cfg: DistillConfig, chw: tuple[int, int, int], device: torch.device) -> Run:
    kernel = make_kernel(cfg.kernel, **cfg.kernel_params)
    return Run(cfg, kernel, feature_dim(kernel, chw), resolve_dtype(cfg.dtype), device, certificate_device(device))
