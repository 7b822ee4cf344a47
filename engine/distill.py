"""The distiller: a step iterator over events (architecture: the CLI and GUI consume the same one).

``run(config)`` loads and preprocesses the data, fits the teacher (certified), then moves the
synthetic images to minimise the duality gap of the small problem evaluated at the teacher
(DGKIP, math doc §4) — or KIP's kernel-ridge target loss (mode "kip") — yielding
:mod:`engine.events`. Between steps it calls ``control.checkpoint()`` (pause blocks, cancel raises
:class:`engine.control.Cancelled`) and honours ``control.stop()`` by finishing with a result.
Same config and seed ⇒ same result on the same device.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Generator, Iterator

import numpy as np
import torch

from engine.baselines import kmeans_centres, random_subset
from engine.certify import MAX_EVAL_TEST, Certificate, TestSet, certify, radius, train_on
from engine.cluster import Cluster
from engine.config import ConfigError, DistillConfig
from engine.control import RunControl
from engine.data import Dataset, DatasetError, check_ipc, check_test_split, load_dataset
from engine.data.preprocess import Preprocessor
from engine.data.rows import decode
from engine.device import certificate_device, describe, resolve_device, resolve_dtype, step_threads, torch_threads
from engine.estimate import check_run
from engine.events import Done, Evaluation, Event, Snapshot, Stage, Step, TeacherDone
from engine.kernels import Kernel, make_kernel
from engine.kernels.base import default_sample
from engine.kip import kip_loss, kip_ridge_value, uses_feature_cache, uses_kip_batches
from engine.losses import Loss, make_loss
from engine.result import DistillResult
from engine.solver import solve_dense
from engine.exact_gap import exact_teacher_gap
from engine.teacher import Teacher, fit_nystrom_teacher, fit_teacher



def to_nchw(x: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) float32 NumPy → (N, C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float32).transpose(0, 3, 1, 2)))


def to_nhwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).contiguous().numpy()


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
        check_init_from(cfg.init_from, ds.classes, ds.report.image_shape)
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


def step_flops(kernel: Kernel, m: int, chw: tuple[int, ...], rows: int, p: int = 0, real_images: int = 0) -> float:
    """Rough forward flops of one distillation step with ``m`` synthetic images of shape ``chw`` (the
    step loop's thread policy, engine.device): an implicit kernel's m × ``rows`` block of real points
    (≈ 10 flops per pair and input value); an explicit kernel's features of the m images (and of
    ``real_images`` real ones, KIP with redrawn networks) plus m × ``rows`` products of width ``p``."""
    if not kernel.explicit:
        return 10.0 * m * rows * math.prod(chw)
    flops, _ = kernel.feature_cost(tuple(chw))
    return (m + real_images) * flops + 10.0 * m * rows * p


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


def _initial_images(cfg: DistillConfig, x_train: np.ndarray, y_train: np.ndarray, n_classes: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(m, H, W, C) float32 preprocessed images and (m,) labels, grouped by class."""
    if cfg.init_from:
        from engine.export import load_distilled
        prev = load_distilled(cfg.init_from)         # checked against the data in prepare_dataset
        return prev.images.astype(np.float32), prev.labels.astype(np.int64)
    if cfg.init == "kmeans":
        return kmeans_centres(x_train, y_train, cfg.ipc, cfg.seed)
    xs, ys = random_subset(x_train, y_train, cfg.ipc, cfg.seed)
    if cfg.init == "noise":
        rng = np.random.default_rng(cfg.seed)
        xs = rng.standard_normal(xs.shape).astype(np.float32)
    return xs, ys


class _EpochBatches:
    """KIP's real batches of ``b`` rows of the same-length ``arrays`` (None entries stay None): epochs of
    a seeded permutation, each row once per epoch (as KIP's shuffled target iterator), a trailing
    partial batch dropped. Each epoch permutes the arrays once, so a step's batch is a view, not a copy;
    when b covers every row the arrays are used as they are (the loss does not depend on row order)."""

    def __init__(self, arrays: list[torch.Tensor | None], b: int, seed: int):
        self.arrays, self.b = arrays, b
        self.n = next(a.shape[0] for a in arrays if a is not None)
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch: list[torch.Tensor | None] = arrays
        self.at = self.n if b < self.n else 0

    def next(self) -> list[torch.Tensor | None]:
        if self.b >= self.n:
            return self.arrays
        if self.at + self.b > self.n:
            perm = torch.randperm(self.n, generator=self.gen)
            self.epoch = [None if a is None else a[perm.to(a.device)] for a in self.arrays]
            self.at = 0
        sl = slice(self.at, self.at + self.b)
        self.at += self.b
        return [None if a is None else a[sl] for a in self.epoch]


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


def run(config: DistillConfig, control: RunControl | None = None, dataset: Dataset | None = None,
        cluster: Cluster | None = None) -> Iterator[Event]:
    """Run one distillation; yields events and ends with :class:`engine.events.Done`.

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

    # ---------------------------------------------------------------- data
    yield Stage("data", f"loading {cfg.data}")
    loaded = dataset if dataset is not None else load_dataset(
        cfg.data, test_path=cfg.test_data, holdout_fraction=cfg.holdout_fraction, seed=cfg.seed,
        max_bytes=budget_bytes(cfg))
    ds = prepare_dataset(cfg, loaded)
    # refuse a run that cannot fit (memory budget or this machine's memory) before any kernel is built;
    # the same decision as the estimate's ``fits``, which also plans the teacher (exact or Nyström, M)
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
    y_test_np = ds.y_test[test_idx].astype(np.int64)
    n_classes = len(ds.classes)
    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    cdev = certificate_device(device)
    x64 = to_nchw(x_train_np).to(cdev, torch.float64)
    y_train = torch.from_numpy(y_train_np).to(cdev)
    kernel = make_kernel(cfg.kernel, **cfg.kernel_params)
    if cluster.distributed:            # data defaults from the rows one process would sample (kernels.base)
        kernel = kernel.with_data_defaults(to_nchw(train_rows[default_sample(n_train)]).to(cdev, torch.float64))
    else:
        kernel = kernel.with_data_defaults(x64)
    cfg = cfg.replace(kernel_params=kernel.params())          # resolved (e.g. the median RBF bandwidth)
    loss = make_loss(cfg.loss)
    control.checkpoint()
    timings["data"] = time.perf_counter() - t0

    # ---------------------------------------------------------------- teacher
    t1 = time.perf_counter()
    Y_train = loss.targets(y_train, n_classes)
    if plan.teacher == "nystrom":
        ranks = f" over {cluster.world} processes" if cluster.distributed else ""
        yield Stage("teacher", f"fitting the Nyström teacher on {n_train:,} images with {plan.centres:,} "
                               f"centres{ranks} ({cfg.loss}, {cfg.kernel})")
        teacher: Teacher = yield from fit_nystrom_teacher(
            kernel, loss, cfg.lam, x64, Y_train[shard] if cluster.distributed else Y_train, y_train,
            centres=plan.centres, selection=cfg.centre_selection, seed=cfg.seed, cache=plan.nystrom_cache,
            tol=cfg.teacher_tol, max_iter=cfg.teacher_max_iter, checkpoint=control.checkpoint, cluster=cluster)
    else:
        yield Stage("teacher", f"fitting the teacher on {len(y_train_np):,} images ({cfg.loss}, {cfg.kernel})")
        teacher = yield from fit_teacher(
            kernel, loss, cfg.lam, x64, Y_train, tol=cfg.teacher_tol, max_iter=cfg.teacher_max_iter,
            budget_bytes=int(cfg.memory_budget_gb * 2**30), checkpoint=control.checkpoint)
    sol = teacher.solution
    timings["teacher"] = time.perf_counter() - t1
    yield TeacherDone(sol.iterations, sol.gap, sol.rel_gap, sol.primal, timings["teacher"], teacher.n,
                      teacher.n_support, sol.solver, teacher.kind, teacher.info.get("centres"), plan.teacher_reason)
    if not cluster.leader:             # the other ranks' work ends with the teacher
        return
    test_source = _CodedRows(ds.rows, decode(ds.x_test)) if ds.rows is not None else ds.x_test
    x_test_np = pre.transform(test_source[test_idx])
    test = TestSet.build(teacher, to_nchw(x_test_np).to(cdev, torch.float64), torch.from_numpy(y_test_np).to(cdev))
    xr, yr = random_subset(train_rows, y_train_np, cfg.ipc, cfg.seed + 1)
    xr64, Yr = to_nchw(xr).to(cdev, torch.float64), loss.targets(torch.from_numpy(yr).to(cdev), n_classes)
    rand_sol, _ = train_on(kernel, loss, cfg.lam, xr64, Yr)
    random_acc = test.points.accuracy(kernel, xr64, rand_sol.alpha, cfg.lam)

    # ---------------------------------------------------------------- distill
    xs_np, ys_np = _initial_images(cfg, train_rows, y_train_np, n_classes)
    syn = _make_synthetic(cfg, loss, xs_np, ys_np, n_classes, device, dtype)
    tw = teacher.cast(dtype, device)
    # KIP samples real target batches: their images, or, for an explicit kernel whose networks are never
    # redrawn, their features φ(x) computed once here (each step then costs the same whatever n is).
    redraw_every = kernel.redraw_every if cfg.mode == "kip" else 0
    # DGKIP with kip_weight > 0 also takes KIP's loss on real batches (the combined objective)
    uses_kip = uses_kip_batches(cfg)
    x_work = f_work = None
    if uses_feature_cache(cfg, kernel):
        f_work = yield from _feature_cache(kernel, x_train_np, device, dtype, control)
    elif uses_kip:
        x_work = to_nchw(x_train_np).to(device, dtype)
    Y_work = Y_train.to(device, dtype) if uses_kip else None
    yield Stage("distill", f"{cfg.mode.upper()}: {cfg.ipc} image(s) per class, {cfg.steps} steps on {describe(device)}")
    # built before the clock starts: the first torch.optim optimizer imports torch._dynamo (1.2-2.7 s measured)
    optimizer = (torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD)(syn.parameters(), lr=cfg.lr)
    t2 = time.perf_counter()                          # steps/s counts the steps only
    alpha_prev: torch.Tensor | None = None
    cert: Certificate | None = None
    curves: list[dict[str, float]] = []
    reason, step = "finished", 0
    m = syn.xs.shape[0]
    # KIP with a random-feature kernel redraws its networks every ``redraw_every`` steps (RFAD). DGKIP
    # never does: the teacher's explicit weights w* live in the feature space of the networks drawn
    # from the kernel's own seed, which the certificates and evaluations also use.
    kip_kernel = kernel
    n_work = Y_work.shape[0] if uses_kip else 0
    b = min(cfg.kip_batch, n_work)
    batches = _EpochBatches([x_work, Y_work, f_work], b, cfg.seed) if uses_kip else None
    w_kip = cfg.kip_weight
    chw = tuple(syn.xs.shape[1:])
    if cfg.mode == "kip":
        p = f_work.shape[1] if f_work is not None else 0
        flops = step_flops(kernel, m, chw, b, p, real_images=b if x_work is not None and kernel.explicit else 0)
    elif tw.weights is not None:
        flops = step_flops(kernel, m, chw, tw.weights.shape[1], tw.weights.shape[0])
    else:
        flops = step_flops(kernel, m, chw, tw.x.shape[0])
    threads = step_threads(device, flops)

    for step in range(1, cfg.steps + 1):
        control.checkpoint()
        if control.stop_requested:
            reason, step = "stopped", step - 1
            break
        with torch_threads(threads):                  # small steps: one thread (see engine.device)
            if cfg.lr_schedule != "constant" or cfg.warmup_steps:
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr * lr_factor(step, cfg.steps, cfg.lr_schedule, cfg.warmup_steps)
            optimizer.zero_grad(set_to_none=True)
            Ys = syn.targets()
            if cfg.mode == "kip":
                if redraw_every and (step - 1) % redraw_every == 0:       # RFAD: fresh random networks
                    kip_kernel = kernel.redraw(cfg.seed * 1_000_003 + step)
                xb, Yb, fb = batches.next()
                objective = kip_loss(kip_kernel, syn.xs, Ys, xb, Yb, cfg.lam, fb=fb, ridge=cfg.kip_ridge)
                fy = km = gap = float("nan")
            else:
                Z, Kss = tw.scores_and_gram(syn.xs)
                if syn.dual_param is None:
                    with torch.no_grad():
                        alpha_prev = solve_dense(Kss.detach(), Ys.detach(), loss, cfg.lam, tol=1e-6, max_iter=8,
                                                 alpha0=alpha_prev).alpha
                    A = alpha_prev
                else:
                    A = loss.alpha_from_param(Ys, syn.dual_param)
                fy_t = loss.fenchel_young(Ys, Z, A).mean()
                km_t = 0.5 * cfg.lam * (tw.w_norm2 - 2.0 / (cfg.lam * m) * (A * Z).sum()
                                        + (A * (Kss @ A)).sum() / (cfg.lam * m) ** 2)
                objective = fy_t + km_t
                fy, km = fy_t.item(), km_t.item()
                gap = fy + km
                if w_kip > 0:      # the combined objective: only what is optimised changes, not what is certified
                    xb, Yb, fb = batches.next()     # KIP's loss with the fixed ridge λ·m: the model DGKIP certifies
                    objective = (1.0 - w_kip) * objective + w_kip * kip_loss(kernel, syn.xs, Ys, xb, Yb, cfg.lam, fb=fb,
                                                                             ridge="fixed")
            objective.backward()
            optimizer.step()
            obj = objective.item()
        elapsed = time.perf_counter() - t2
        r = radius(gap, cfg.lam) if gap == gap else float("nan")
        yield Step(step, cfg.steps, obj, gap, fy, km, r, elapsed)
        row = {"step": step, "objective": obj, "gap": gap, "fenchel_young": fy, "kernel_match": km,
               "radius": r, "seconds": elapsed}
        if cfg.snapshot_every and step % cfg.snapshot_every == 0:
            yield _snapshot(step, syn, pre)
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
            cert = _certify(teacher, syn, n_classes, test, cdev, cert)
            yield _evaluation(step, cert, test, random_acc)
            row.update(_cert_row(cert))
        curves.append(row)

    # ---------------------------------------------------------------- final certificate
    yield Stage("evaluate", "certifying the distilled set")
    cert = _certify(teacher, syn, n_classes, test, cdev, cert)
    yield _evaluation(step, cert, test, random_acc)
    if curves and curves[-1]["step"] == step:
        curves[-1].update(_cert_row(cert))
    if step == 0 or not cfg.snapshot_every or step % cfg.snapshot_every:
        yield _snapshot(step, syn, pre)
    timings["distill"] = time.perf_counter() - t2
    # how far the teacher is from the exact full-data teacher: its own certified gap, or for a Nyström
    # teacher the full problem's gap (one pass over the n × n kernel; Stop skips it, the result stays)
    exact_gap = sol.gap if teacher.kind == "exact" else None
    if teacher.kind == "nystrom" and cfg.certify_exact:
        yield Stage("certify-exact", f"certifying the distance to the exact teacher (a pass over the "
                                     f"{teacher.n:,} × {teacher.n:,} kernel)")
        t3 = time.perf_counter()
        exact_gap = yield from exact_teacher_gap(teacher, x64, Y_train, checkpoint=control.checkpoint,
                                                 stop_requested=lambda: control.stop_requested)
        timings["certify_exact"] = time.perf_counter() - t3
    timings["total"] = time.perf_counter() - t0
    metrics = {
        "teacher_test_accuracy": test.teacher_accuracy,
        "distilled_test_accuracy": cert.distilled_accuracy,
        "random_subset_test_accuracy": random_acc,
        "gap": cert.gap, "fenchel_young": cert.fenchel_young, "kernel_match": cert.kernel_match,
        "radius": cert.radius,
        "radius_to_exact_teacher": None if exact_gap is None else cert.radius + radius(exact_gap, cfg.lam),
        "exact_teacher_gap": exact_gap,
        "teacher_kind": teacher.kind, "teacher_reason": plan.teacher_reason,
        "centres": teacher.info.get("centres"), "centre_selection": teacher.info.get("selection"),
        "nystrom_jitter": teacher.info.get("jitter"),
        "certified_consistency": cert.certified_consistency, "agreement_with_teacher": cert.agreement,
        "distance_to_teacher": cert.distance, "radius_for_half_certified": cert.radius_for_half,
        "error_lower": cert.error_lower, "error_upper": cert.error_upper,
        "teacher_gap": sol.gap, "teacher_rel_gap": sol.rel_gap, "teacher_primal": sol.primal,
        "teacher_iterations": sol.iterations, "teacher_solver": sol.solver, "teacher_seconds": timings["teacher"],
        "n_train": int(teacher.n), "n_support": teacher.n_support, "n_test": int(len(y_test_np)),
        "steps": step, "seconds": timings["total"], "processes": cluster.world,
        "columns": int(Y_train.shape[1]),     # 1: a binary loss on two classes, solved as one column
        "steps_per_second": step / timings["distill"] if timings["distill"] > 0 else 0.0,
    }
    if cfg.mode == "kip":
        # KIP's own model, KRR on S with the run's KIP ridge (λ·tr(K_SS)/m under "trace"): the certified
        # model's distilled_test_accuracy (ridge λ·m) can be far lower for a set trained with a much
        # smaller trace ridge (issue 17, MNIST IPC 10: 53.8 % against 93.7 %)
        metrics.update(kip_test_accuracy=_kip_accuracy(kernel, syn, test, cdev, cfg), kip_ridge=cfg.kip_ridge)
    result = DistillResult(
        config=cfg, classes=list(ds.classes), images=to_nhwc(syn.xs), labels=syn.labels.cpu().numpy(),
        # a binary loss on two classes ran as one column: stored as the mirrored one-vs-rest pair, the
        # form every reader of exports and the transfer evaluation expects (engine.losses)
        targets=loss.expand_columns(syn.targets().detach(), n_classes).to("cpu", torch.float32).numpy(),
        alpha=loss.expand_columns(cert.alpha, n_classes).cpu().numpy(), preprocess=pre, metrics=metrics, curves=curves,
        dataset=ds.describe(), timings=timings, device=describe(device))
    yield Done(reason, result, metrics)


def _feature_cache(kernel: Kernel, x_np: np.ndarray, device, dtype, control: RunControl, rows: int = 2048
                   ) -> Generator[Event, None, torch.Tensor]:
    """φ(x_train) (n, p) in the work dtype for KIP with fixed networks, built in row tiles (pause and
    cancel are honoured between tiles) straight from the NHWC array, without a whole-set tensor copy."""
    n = len(x_np)
    yield Stage("features", f"KIP: features of the {n:,} training images (computed once)")
    tiles = []
    with torch.no_grad():
        for i in range(0, n, rows):
            control.checkpoint()
            tiles.append(kernel.features(to_nchw(x_np[i:i + rows]).to(device, dtype)))
    return torch.cat(tiles)


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
