"""The distiller: a step iterator over events (architecture: the CLI and GUI consume the same one).

``run(config)`` loads and preprocesses the data, fits the teacher (certified), then moves the
synthetic images to minimise the duality gap of the small problem evaluated at the teacher
(DGKIP, math doc §4) — or KIP's kernel-ridge target loss (mode "kip") — yielding
:mod:`engine.events`. Between steps it calls ``control.checkpoint()`` (pause blocks, cancel raises
:class:`engine.control.Cancelled`) and honours ``control.stop()`` by finishing with a result.
Same config and seed ⇒ same result on the same device.

The run is a chain of named stages, each its own function: :func:`_prepare_data` (load, refuse what
cannot fit — :func:`engine.plan.check_run` — preprocess, build the kernel) → :func:`_teacher` (fit it,
then the test set and the random-subset baseline) → the objective (:mod:`engine.objectives`: its
working data) → :func:`_loop` (the steps) → :func:`_final_certificate` and :func:`_exact_gap` →
:func:`_metrics` and :func:`_result`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Generator, Iterator

import numpy as np
import torch

from engine import adam
from engine.baselines import kmeans_centres, random_subset
from engine.certify import MAX_EVAL_TEST, Certificate, TestSet, certify, radius, train_on
from engine.cluster import Cluster
from engine.config import ConfigError, DistillConfig
from engine.control import RunControl
from engine.data import Dataset, DatasetError, check_ipc, check_test_split, load_dataset
from engine.data.preprocess import Preprocessor
from engine.data.rows import decode
from engine.device import StepThreads, certificate_device, describe, resolve_device, resolve_dtype, torch_threads
from engine.plan import check_run
from engine.events import Done, Evaluation, Event, Snapshot, Stage, Step, TeacherDone
from engine.kernels import Kernel, make_kernel
from engine.kernels.base import default_sample
from engine.kip import kip_ridge_value
from engine.losses import Loss, make_loss
from engine.objectives import Objective, make_objective
from engine.result import DistillResult
from engine.exact_gap import exact_teacher_gap
from engine.teacher import Teacher, fit_nystrom_teacher, fit_teacher
from engine.tensors import to_nchw, to_nhwc    # noqa: F401 - also imported from here



def budget_bytes(cfg: DistillConfig) -> int:
    """The memory budget in bytes (what a dataset may take once decoded)."""
    return int(cfg.memory_budget_gb * 2**30)


def prepare_dataset(cfg: DistillConfig, dataset: Dataset | None) -> Dataset:
    """Load (unless given), select classes, cap per class, and check every class has ≥ IPC images and
    at least one test image, and that an ``init_from`` export fits the data."""
    ds = dataset if dataset is not None else load_dataset(
        cfg.data, test_path=cfg.test_data, holdout_fraction=cfg.holdout_fraction, seed=cfg.seed,
        max_bytes=budget_bytes(cfg))
    if cfg.classes:
        ds = ds.select_classes(list(cfg.classes))
    if len(ds.classes) < 2:
        raise DatasetError(f"{ds.report.source}: only one class ({ds.classes[0]!r}); distillation needs at "
                           "least two classes — add a second class folder or choose more classes")
    if cfg.max_per_class:
        ds = ds.cap_per_class(cfg.max_per_class, cfg.seed)
    short = check_ipc(ds, cfg.ipc)
    if short:
        raise DatasetError("; ".join(f"{p.message} — {p.fix}" for p in short))
    check_test_split(ds, cfg.holdout_fraction)
    if cfg.init_from:
        from engine.export import check_init_from
        check_init_from(cfg.init_from, ds.classes, ds.report.image_shape, ipc=cfg.ipc)
    return ds


def stratified_cap(y: np.ndarray, limit: int, seed: int) -> np.ndarray:
    if len(y) <= limit:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[: max(1, round(limit * np.mean(y == c)))]
                          for c in np.unique(y)])
    return np.sort(idx)


@dataclass
class _Synthetic:
    """Trainable synthetic state: images xs (m, C_img, H, W), labels (m,), label/dual parameters."""
    xs: torch.Tensor
    labels: torch.Tensor
    base_targets: torch.Tensor
    label_param: torch.Tensor | None
    dual_param: torch.Tensor | None
    loss: Loss

    def targets(self) -> torch.Tensor:
        if self.label_param is None:
            return self.base_targets
        if self.loss.name == "cross-entropy":
            return torch.softmax(self.label_param, dim=1)
        return self.label_param

    def parameters(self) -> list[torch.Tensor]:
        return [p for p in (self.xs, self.label_param, self.dual_param) if p is not None]


def lr_factor(step: int, steps: int, schedule: str, warmup: int = 0) -> float:
    """The step-size multiplier of (1-based) step ``step`` of ``steps``: a linear warm-up
    ``step / warmup`` over the first ``warmup`` steps, then 1 ("constant") or the half cosine
    ``(1 + cos(π·(step − warmup − 1) / (steps − warmup))) / 2`` ("cosine"), which is 1 at the first
    step after the warm-up and stays above 0 at the last step."""
    if warmup and step <= warmup:
        return step / warmup
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup - 1) / max(1, steps - warmup)))
    return 1.0


def _initial_images(cfg: DistillConfig, x_train: np.ndarray, y_train: np.ndarray, n_classes: int,
                    pre: Preprocessor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(m, H, W, C) float32 preprocessed images and (m,) labels, grouped by class. An ``init_from``
    export made with a preprocessing other than the run's ``pre`` (ZCA against standardisation, or
    statistics of other data) is carried over through its unclipped pixels."""
    if cfg.init_from:
        from engine.export import load_distilled
        prev = load_distilled(cfg.init_from)         # checked against the data in prepare_dataset
        images = prev.images.astype(np.float32)
        if pre is not None and not prev.preprocess.same_map(pre):
            images = pre.from_pixels(prev.preprocess.inverse(images, clip=False))
        return images, prev.labels.astype(np.int64)
    if cfg.init == "kmeans":
        return kmeans_centres(x_train, y_train, cfg.ipc, cfg.seed)
    xs, ys = random_subset(x_train, y_train, cfg.ipc, cfg.seed)
    if cfg.init == "noise":
        rng = np.random.default_rng(cfg.seed)
        xs = rng.standard_normal(xs.shape).astype(np.float32)
    return xs, ys


class _CodedRows:
    """uint8 images (n, H, W, C) of a row-coded dataset on demand: ``view[idx]`` reads those rows
    (engine.data.rows); ``view[:]`` reads them all."""

    def __init__(self, rows, codes: np.ndarray):
        self.rows, self.codes = rows, codes

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, idx) -> np.ndarray:
        return self.rows.read(self.codes[idx])


class _PreprocessedRows:
    """Preprocessed rows of uint8 images (n, H, W, C) on demand: ``view[idx]`` = ``pre.transform(x[idx])``
    (float32), so a sharded run takes its initial and baseline images without a full float copy."""

    def __init__(self, pre: Preprocessor, x_uint8: np.ndarray):
        self.pre, self.x = pre, x_uint8

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx) -> np.ndarray:
        return self.pre.transform(self.x[idx])


def refuse_unsharded(cfg: DistillConfig, cluster: Cluster) -> None:
    """Under torchrun only the Nyström teacher is sharded: refuse what would need every image on one rank."""
    if not cluster.distributed:
        return
    where = f"this run has {cluster.world} processes (torchrun)"
    if cfg.mode == "kip":
        raise ConfigError("mode", f"KIP samples batches from every training image and has no teacher to share: "
                          f"{where}; run KIP in one process (without torchrun), or use mode 'dgkip'")
    if cfg.teacher == "exact":
        raise ConfigError("teacher", f"the exact teacher is not sharded: {where}; use teacher 'auto' or 'nystrom', "
                          "or run in one process")
    if cfg.certify_exact:
        raise ConfigError("certify_exact", f"certifying against the exact teacher needs every image in one process: "
                          f"{where}; turn certify_exact off, or run it in one process")


@dataclass
class _Data:
    """The prepared data of a run (stage 1): the config with the kernel's data defaults resolved, the
    dataset, its preprocessor, the training images — ``x_train`` (n, H, W, C) float32 (a rank's rows
    when sharded), ``train_rows`` all rows on demand, ``x64`` (n, C, H, W) float64 on the certificate
    device — labels ``y_train`` (n,), the sampled test rows, the kernel, loss and run plan."""
    cfg: DistillConfig
    ds: Dataset
    pre: Preprocessor
    x_train: np.ndarray
    train_rows: object
    x64: torch.Tensor
    y_train_np: np.ndarray
    y_train: torch.Tensor
    test_idx: np.ndarray
    kernel: Kernel
    loss: Loss
    plan: object
    device: torch.device
    dtype: torch.dtype
    cdev: torch.device

    @property
    def n_classes(self) -> int:
        return len(self.ds.classes)


@dataclass
class _Evaluation:
    """What every certificate is measured against (after the teacher): the teacher, the test set, the
    random-subset baseline's accuracy and the (n, k) training targets."""
    teacher: Teacher
    test: TestSet
    random_acc: float
    Y_train: torch.Tensor


@dataclass
class _Loop:
    """The step loop's outcome: why it ended, the last step, the per-step curves, the last certificate
    (None when no evaluation ran), its start time and its thread choices."""
    reason: str
    step: int
    curves: list
    cert: Certificate | None
    started: float
    threads: StepThreads


def run(config: DistillConfig, control: RunControl | None = None, dataset: Dataset | None = None,
        cluster: Cluster | None = None) -> Iterator[Event]:
    """Run one distillation; yields events and ends with :class:`engine.events.Done`.

    Stages: prepare the data → fit the teacher → build the objective (engine.objectives) → the step
    loop → the final certificate → the result.

    With a ``cluster`` of several processes (torchrun, :mod:`engine.cluster`) every rank runs this
    generator: the Nyström teacher is fitted on the ranks' shards of the training rows together; then
    rank 0 goes on alone (distillation, certificates, Done) and the other ranks' generators end after
    :class:`engine.events.TeacherDone` without a Done."""
    cfg = config.validate()
    control = control or RunControl()
    cluster = cluster or Cluster()
    refuse_unsharded(cfg, cluster)
    timings: dict[str, float] = {}
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    data = yield from _prepare_data(cfg, dataset, cluster)
    control.checkpoint()
    timings["data"] = time.perf_counter() - t0
    ev = yield from _teacher(data, control, cluster, timings)
    if ev is None:                     # the other ranks' work ends with the teacher
        return
    syn = _make_synthetic(data.cfg, data.loss, *_initial_images(data.cfg, data.train_rows, data.y_train_np,
                                                                 data.n_classes, data.pre),
                          data.n_classes, data.device, data.dtype)
    objective = make_objective(data.cfg, data.kernel)
    yield from objective.prepare(ev.teacher, data.x_train, ev.Y_train, data.device, data.dtype, control.checkpoint)
    loop = yield from _loop(data, ev, syn, objective, control)
    cert = yield from _final_certificate(data, ev, syn, loop)
    timings["distill"] = time.perf_counter() - loop.started
    exact_gap = yield from _exact_gap(data, ev, control, timings)
    timings["total"] = time.perf_counter() - t0
    metrics = _metrics(data, ev, syn, loop, cert, exact_gap, timings, cluster)
    yield Done(loop.reason, _result(data, syn, cert, metrics, loop, timings), metrics)


def _prepare_data(cfg: DistillConfig, dataset: Dataset | None, cluster: Cluster) -> Generator[Event, None, _Data]:
    """Load and prepare the dataset, refuse a run that cannot fit, preprocess, build the kernel."""
    yield Stage("data", f"loading {cfg.data}")
    loaded = dataset if dataset is not None else load_dataset(
        cfg.data, test_path=cfg.test_data, holdout_fraction=cfg.holdout_fraction, seed=cfg.seed,
        max_bytes=budget_bytes(cfg))
    ds = prepare_dataset(cfg, loaded)
    # refuse a run that cannot fit (memory budget or this machine's memory) before any kernel is built;
    # the same decision as the plan's ``fits``, which also plans the teacher (exact or Nyström, M)
    plan = check_run(cfg, loaded.report, ranks=cluster.world)
    y_train_np = ds.y_train.astype(np.int64)
    n_train = len(y_train_np)
    shard = cluster.shard(n_train)
    # the uint8 images: all of them, or, for a rank of a sharded run, its rows (row-coded sources are
    # read by row: no rank holds the whole set); other rows on demand, preprocessed (_PreprocessedRows)
    source = _CodedRows(ds.rows, decode(ds.x_train)) if ds.rows is not None else ds.x_train
    x_uint8 = source[np.arange(shard.start, shard.stop)] if cluster.distributed else source[:]
    pre = Preprocessor.fit(x_uint8, method=cfg.preprocess, zca_reg=cfg.zca_reg,
                           reduce=cluster.sum_numpy if cluster.distributed else None)
    x_train_np = pre.transform(x_uint8)
    del x_uint8
    train_rows = _PreprocessedRows(pre, source) if cluster.distributed else x_train_np
    test_idx = stratified_cap(ds.y_test, MAX_EVAL_TEST, cfg.seed)
    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    cdev = certificate_device(device)
    x64 = to_nchw(x_train_np).to(cdev, torch.float64)
    kernel = make_kernel(cfg.kernel, **cfg.kernel_params)
    if cluster.distributed:            # data defaults from the rows one process would sample (kernels.base)
        kernel = kernel.with_data_defaults(to_nchw(train_rows[default_sample(n_train)]).to(cdev, torch.float64))
    else:
        kernel = kernel.with_data_defaults(x64)
    cfg = cfg.replace(kernel_params=kernel.params())          # resolved (e.g. the median RBF bandwidth)
    return _Data(cfg, ds, pre, x_train_np, train_rows, x64, y_train_np, torch.from_numpy(y_train_np).to(cdev),
                 test_idx, kernel, make_loss(cfg.loss), plan, device, dtype, cdev)


def _teacher(data: _Data, control: RunControl, cluster: Cluster, timings: dict[str, float]
             ) -> Generator[Event, None, _Evaluation | None]:
    """Fit the teacher the plan chose (exact or Nyström); on rank 0 (or alone) also build the test set
    and the random-subset baseline; other ranks get ``None``."""
    cfg, loss, kernel, x64 = data.cfg, data.loss, data.kernel, data.x64
    n_train = len(data.y_train_np)
    t1 = time.perf_counter()
    Y_train = loss.targets(data.y_train, data.n_classes)
    if data.plan.teacher == "nystrom":
        shard = cluster.shard(n_train)
        ranks = f" over {cluster.world} processes" if cluster.distributed else ""
        yield Stage("teacher", f"fitting the Nyström teacher on {n_train:,} images with {data.plan.centres:,} "
                               f"centres{ranks} ({cfg.loss}, {cfg.kernel})")
        teacher: Teacher = yield from fit_nystrom_teacher(
            kernel, loss, cfg.lam, x64, Y_train[shard] if cluster.distributed else Y_train, data.y_train,
            centres=data.plan.centres, selection=cfg.centre_selection, seed=cfg.seed, cache=data.plan.nystrom_cache,
            tol=cfg.teacher_tol, max_iter=cfg.teacher_max_iter, checkpoint=control.checkpoint, cluster=cluster)
    else:
        yield Stage("teacher", f"fitting the teacher on {n_train:,} images ({cfg.loss}, {cfg.kernel})")
        teacher = yield from fit_teacher(
            kernel, loss, cfg.lam, x64, Y_train, tol=cfg.teacher_tol, max_iter=cfg.teacher_max_iter,
            budget_bytes=int(cfg.memory_budget_gb * 2**30), checkpoint=control.checkpoint)
    sol = teacher.solution
    timings["teacher"] = time.perf_counter() - t1
    yield TeacherDone(sol.iterations, sol.gap, sol.rel_gap, sol.primal, timings["teacher"], teacher.n,
                      teacher.n_support, sol.solver, teacher.kind, teacher.info.get("centres"),
                      data.plan.teacher_reason, sol.unit)
    if not cluster.leader:
        return None
    ds, cdev = data.ds, data.cdev
    test_source = _CodedRows(ds.rows, decode(ds.x_test)) if ds.rows is not None else ds.x_test
    x_test_np = data.pre.transform(test_source[data.test_idx])
    y_test = torch.from_numpy(ds.y_test[data.test_idx].astype(np.int64)).to(cdev)
    test = TestSet.build(teacher, to_nchw(x_test_np).to(cdev, torch.float64), y_test)
    xr, yr = random_subset(data.train_rows, data.y_train_np, cfg.ipc, cfg.seed + 1)
    xr64, Yr = to_nchw(xr).to(cdev, torch.float64), loss.targets(torch.from_numpy(yr).to(cdev), data.n_classes)
    rand_sol, _ = train_on(kernel, loss, cfg.lam, xr64, Yr)
    return _Evaluation(teacher, test, test.points.accuracy(kernel, xr64, rand_sol.alpha, cfg.lam), Y_train)


def make_optimizer(name: str, params: list[torch.Tensor], lr: float, device: torch.device) -> torch.optim.Optimizer:
    """The optimiser of the synthetic parameters: Adam or SGD at step size ``lr``, torch's fused
    implementation on the CPU and CUDA (one kernel for all parameters: Adam's update of 10 images of
    28 × 28 took 66 µs against 130 µs for the default multi-tensor one, 185 against 346 µs for 100, one
    thread; the same update to rounding, 2e-16 apart after 50 float64 steps)."""
    cls = torch.optim.Adam if name == "adam" else torch.optim.SGD
    if device.type in ("cpu", "cuda"):
        return cls(params, lr=lr, fused=True)
    return cls(params, lr=lr)


def _loop(data: _Data, ev: _Evaluation, syn: "_Synthetic", objective: Objective, control: RunControl
          ) -> Generator[Event, None, _Loop]:
    """The steps: the objective's loss, one optimiser step, a Step event, snapshots and evaluations."""
    cfg = data.cfg
    yield Stage("distill", f"{cfg.mode.upper()}: {cfg.ipc} image(s) per class, {cfg.steps} steps on "
                           f"{describe(data.device)}")
    # built before the clock starts: the first torch.optim optimizer imports torch._dynamo (1.2-2.7 s measured)
    optimizer = make_optimizer(cfg.optimizer, syn.parameters(), cfg.lr, data.device)
    threads = StepThreads(data.device, objective.flops(syn.xs.shape[0], tuple(syn.xs.shape[1:])), cfg.cpu_threads,
                          cfg.steps)
    t2 = time.perf_counter()                          # steps/s counts the steps only
    cert: Certificate | None = None
    curves: list[dict[str, float]] = []
    reason, step = "finished", 0
    for step in range(1, cfg.steps + 1):
        control.checkpoint()
        if control.stop_requested:
            reason, step = "stopped", step - 1
            break
        started = time.perf_counter()
        with torch_threads(threads.threads(step)):    # small CPU steps: one thread or all, timed
            if cfg.lr_schedule != "constant" or cfg.warmup_steps:
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr * lr_factor(step, cfg.steps, cfg.lr_schedule, cfg.warmup_steps)
            optimizer.zero_grad(set_to_none=True)
            value = objective.step(step, syn.xs, syn.targets(), syn.dual_param)
            value.backward(syn.xs)
            adam.step(optimizer)
            obj = value.loss.item()
        now = time.perf_counter()
        threads.record(step, now - started)
        elapsed = now - t2
        gap = value.gap
        r = radius(gap, cfg.lam) if gap == gap else float("nan")
        yield Step(step, cfg.steps, obj, gap, value.fenchel_young, value.kernel_match, r, elapsed)
        row = {"step": step, "objective": obj, "gap": gap, "fenchel_young": value.fenchel_young,
               "kernel_match": value.kernel_match, "radius": r, "seconds": elapsed}
        if cfg.snapshot_every and step % cfg.snapshot_every == 0:
            yield _snapshot(step, syn, data.pre)
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
            cert = _certify(ev.teacher, syn, data.n_classes, ev.test, data.cdev, cert)
            yield _evaluation(step, cert, ev.test, ev.random_acc)
            row.update(_cert_row(cert))
        curves.append(row)
    return _Loop(reason, step, curves, cert, t2, threads)


def _final_certificate(data: _Data, ev: _Evaluation, syn: "_Synthetic", loop: _Loop
                       ) -> Generator[Event, None, Certificate]:
    """Certify the distilled set (and snapshot it unless the loop just did)."""
    cfg, step = data.cfg, loop.step
    yield Stage("certify", "certifying the distilled set")
    cert = _certify(ev.teacher, syn, data.n_classes, ev.test, data.cdev, loop.cert)
    yield _evaluation(step, cert, ev.test, ev.random_acc)
    if loop.curves and loop.curves[-1]["step"] == step:
        loop.curves[-1].update(_cert_row(cert))
    if step == 0 or not cfg.snapshot_every or step % cfg.snapshot_every:
        yield _snapshot(step, syn, data.pre)
    return cert


def _exact_gap(data: _Data, ev: _Evaluation, control: RunControl, timings: dict[str, float]
               ) -> Generator[Event, None, float | None]:
    """How far the teacher is from the exact full-data teacher: its own certified gap, or for a Nyström
    teacher the full problem's gap (one pass over the n × n kernel; Stop skips it, the result stays)."""
    teacher = ev.teacher
    if teacher.kind == "exact":
        return teacher.solution.gap
    if not data.cfg.certify_exact:
        return None
    yield Stage("certify-exact", f"certifying the distance to the exact teacher (a pass over the "
                                 f"{teacher.n:,} × {teacher.n:,} kernel)")
    t3 = time.perf_counter()
    exact_gap = yield from exact_teacher_gap(teacher, data.x64, ev.Y_train, checkpoint=control.checkpoint,
                                             stop_requested=lambda: control.stop_requested)
    timings["certify_exact"] = time.perf_counter() - t3
    return exact_gap


def _metrics(data: _Data, ev: _Evaluation, syn: "_Synthetic", loop: _Loop, cert: Certificate,
             exact_gap: float | None, timings: dict[str, float], cluster: Cluster) -> dict:
    """The run's metrics (exports and the app read these keys)."""
    cfg, teacher, test, step = data.cfg, ev.teacher, ev.test, loop.step
    sol = teacher.solution
    metrics = {
        "teacher_test_accuracy": test.teacher_accuracy,
        "distilled_test_accuracy": cert.distilled_accuracy,
        "random_subset_test_accuracy": ev.random_acc,
        "gap": cert.gap, "fenchel_young": cert.fenchel_young, "kernel_match": cert.kernel_match,
        "radius": cert.radius,
        "radius_to_exact_teacher": None if exact_gap is None else cert.radius + radius(exact_gap, cfg.lam),
        "exact_teacher_gap": exact_gap,
        "teacher_kind": teacher.kind, "teacher_reason": data.plan.teacher_reason,
        "centres": teacher.info.get("centres"), "centre_selection": teacher.info.get("selection"),
        "nystrom_jitter": teacher.info.get("jitter"),
        "certified_consistency": cert.certified_consistency, "agreement_with_teacher": cert.agreement,
        "distance_to_teacher": cert.distance, "radius_for_half_certified": cert.radius_for_half,
        "error_lower": cert.error_lower, "error_upper": cert.error_upper,
        "teacher_gap": sol.gap, "teacher_rel_gap": sol.rel_gap, "teacher_primal": sol.primal,
        "teacher_iterations": sol.iterations, "teacher_solver": sol.solver, "teacher_seconds": timings["teacher"],
        "n_train": int(teacher.n), "n_support": teacher.n_support, "n_test": int(len(test.y)),
        "steps": step, "seconds": timings["total"], "processes": cluster.world,
        # the steps' CPU threads at the end (None off the CPU) and the latest timed trials
        "step_threads": loop.threads.used(), "thread_trials": loop.threads.trials,
        "columns": int(ev.Y_train.shape[1]),     # 1: a binary loss on two classes, solved as one column
        "steps_per_second": step / timings["distill"] if timings["distill"] > 0 else 0.0,
    }
    if cfg.mode == "kip":
        # KIP's own model, KRR on S with the run's KIP ridge (λ·tr(K_SS)/m under "trace"): the certified
        # model's distilled_test_accuracy (ridge λ·m) can be far lower for a set trained with a much
        # smaller trace ridge (issue 17, MNIST IPC 10: 53.8 % against 93.7 %)
        metrics.update(kip_test_accuracy=_kip_accuracy(data.kernel, syn, test, data.cdev, cfg), kip_ridge=cfg.kip_ridge)
    return metrics


def _result(data: _Data, syn: "_Synthetic", cert: Certificate, metrics: dict, loop: _Loop,
            timings: dict[str, float]) -> DistillResult:
    loss, n_classes = data.loss, data.n_classes
    return DistillResult(
        config=data.cfg, classes=list(data.ds.classes), images=to_nhwc(syn.xs), labels=syn.labels.cpu().numpy(),
        # a binary loss on two classes ran as one column: stored as the mirrored one-vs-rest pair, the
        # form every reader of exports and the transfer evaluation expects (engine.losses)
        targets=loss.expand_columns(syn.targets().detach(), n_classes).to("cpu", torch.float32).numpy(),
        alpha=loss.expand_columns(cert.alpha, n_classes).cpu().numpy(), preprocess=data.pre, metrics=metrics,
        curves=loop.curves, dataset=data.ds.describe(), timings=timings, device=describe(data.device),
        outcome=loop.reason)


def _make_synthetic(cfg, loss, xs_np, ys_np, n_classes, device, dtype) -> _Synthetic:
    xs = to_nchw(xs_np).to(device, dtype).requires_grad_(True)
    labels = torch.from_numpy(ys_np).to(device)
    base = loss.targets(labels, n_classes, dtype=dtype)
    label_param = None
    if cfg.learn_labels:
        init = torch.log(base * 0.9 + 0.1 / n_classes) if loss.name == "cross-entropy" else base.clone()
        label_param = init.requires_grad_(True)
    dual_param = None
    if cfg.mode == "dgkip" and cfg.alpha_mode == "joint":
        dual_param = torch.zeros_like(base).requires_grad_(True)
    return _Synthetic(xs, labels, base, label_param, dual_param, loss)


def _certify(teacher: Teacher, syn: _Synthetic, n_classes: int, test: TestSet, cdev, prev: Certificate | None
             ) -> Certificate:
    xs64 = syn.xs.detach().to(cdev, torch.float64)
    Ys64 = syn.targets().detach().to(cdev, torch.float64)
    return certify(teacher, xs64, Ys64, test, alpha0=None if prev is None else prev.alpha)


@torch.no_grad()
def _kip_accuracy(kernel: Kernel, syn: _Synthetic, test: TestSet, cdev, cfg: DistillConfig) -> float:
    """Test accuracy of KRR fitted on the synthetic set with KIP's ridge (engine.kip), float64."""
    xs = syn.xs.detach().to(cdev, torch.float64)
    Ys = syn.targets().detach().to(cdev, torch.float64)
    Kss = kernel(xs)
    m = xs.shape[0]
    eye = torch.eye(m, dtype=Kss.dtype, device=Kss.device)
    coef = torch.linalg.solve(Kss + kip_ridge_value(Kss, cfg.lam, cfg.kip_ridge) * eye, Ys)
    return test.points.accuracy(kernel, xs, coef * (cfg.lam * m), cfg.lam)    # predict divides by λm


def _evaluation(step: int, cert: Certificate, test: TestSet, random_acc: float) -> Evaluation:
    return Evaluation(step, cert.gap, cert.radius, cert.distilled_accuracy, test.teacher_accuracy, random_acc,
                      cert.certified_consistency, cert.error_lower, cert.error_upper, cert.agreement, cert.distance,
                      cert.radius_for_half)


def _cert_row(cert: Certificate) -> dict[str, float]:
    return {"certified_gap": cert.gap, "certified_radius": cert.radius,
            "distilled_accuracy": cert.distilled_accuracy, "certified_consistency": cert.certified_consistency,
            "error_lower": cert.error_lower, "error_upper": cert.error_upper, "agreement": cert.agreement,
            "distance": cert.distance}


def _snapshot(step: int, syn: _Synthetic, pre: Preprocessor) -> Snapshot:
    return Snapshot(step, pre.inverse(to_nhwc(syn.xs)).astype(np.float32), syn.labels.cpu().numpy().copy())
