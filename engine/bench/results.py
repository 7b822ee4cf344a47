"""``dgkip-engine bench --suite quick|mnist|cifar|cifar-zca|full``: result tables and performance ratios measured in one run (issues 3, 6, 7).

For every dataset × IPC cell of a suite it distils with DGKIP under each loss and with KIP, and
compares, at the same number of images per class, with a random class-balanced real subset and
k-means centres:

- kernel accuracy: the same-loss kernel model (same kernel, λ) trained on each set, on the real test
  split, next to the teacher (all data);
- transfer accuracy: finite networks trained from scratch on each set (``engine.transfer``
  recipes, several seeds, mean ± std), tested on a stratified sample of the real test split with the
  set's own preprocessing.

Every ratio compares against a reference measured in the same process on the same data: our
teacher solve vs scikit-learn on the same objective, our kernel vs a plain matrix product of the
same shapes, and the distillation step time as n grows. Nothing here is asserted; it prints and
writes ``bench.md`` and ``bench.json``.

Suites: ``quick`` (MNIST class pair and 10 classes from ../shared/datasets, capped per class, when
present, else the built-in digits; IPC 1 and 10, transfer at IPC 1; under 10 minutes on 2 CPU cores),
``mnist`` (the same with transfer at IPC 10 too; 837 s measured, partly under other load),
``cifar`` (CIFAR-10: 10 classes at 1,000 images per class and three whole class pairs, the rf-conv
kernel, IPC 1 and 10, transfer to ConvNet-3), ``cifar-zca`` (its 10-class IPC-1 cell with ZCA
whitening, learned labels and 1,000 steps, as the published KIP/RFAD numbers are set up) and ``full`` (uncapped class pair,
12,000-image 10-class MNIST, Fashion-MNIST, IPC 1/10/50, all three networks, 300 epochs; meant for a
GPU machine).
The other suites are listed in :mod:`engine.bench`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.baselines import kmeans_centres, random_subset
from engine.certify import MAX_EVAL_TEST, TestPoints, train_on
from engine.config import DistillConfig
from engine.data import Dataset, load_dataset
from engine.device import step_threads, torch_threads
from engine.distill import prepare_dataset, run, stratified_cap, to_nchw
from engine.objectives import step_flops
from engine.events import Done
from engine.kernels import Kernel, make_kernel
from engine.losses import loss_names, make_loss
from engine.result import DistillResult
from engine.timing import best_of, peak_rss_mb
from engine.bench.report import machine, pct, resolved_params
from engine.transfer import QUICK_EPOCHS, TransferSummary, run_transfer

LOSSES = tuple(loss_names())           # the bench grid covers every loss of the registry
TRANSFER_LOSS = "cross-entropy"      # the DGKIP set whose images are transferred (chosen a priori)


@dataclass(frozen=True)
class Cell:
    """One dataset of a suite: ``data`` path (or "sample"), classes (None = all), per-class cap."""
    label: str
    data: str
    classes: tuple[str, ...] | None = None
    cap: int | None = None
    losses: tuple[str, ...] | None = None     # DGKIP losses of this cell (None = the suite's)


@dataclass(frozen=True)
class Suite:
    cells: tuple[Cell, ...]
    ipcs: tuple[int, ...]
    steps: int
    lam: float
    lr: float
    kernel: str
    losses: tuple[str, ...]
    networks: tuple[str, ...]
    seeds: int
    epochs: int | None              # transfer epochs (None = each recipe's own)
    transfer_test: int              # real test images used for transfer accuracy (stratified sample)
    scaling_n: tuple[int, ...]
    variants: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()   # extra DGKIP rows: (loss label, config overrides)
    transfer_ipcs: tuple[int, ...] | None = None   # IPCs with transfer rows (None = all)
    kernel_params: tuple[tuple[str, Any], ...] = ()
    ratio_n: int = 2000              # problem size of the solver and kernel ratios
    memory_budget_gb: float = 4.0    # each run's memory budget (engine.plan refuses runs above it)
    teacher_max_iter: int = 200      # Newton steps, coordinate-descent rounds or FISTA steps / 50
    config: tuple[tuple[str, Any], ...] = ()   # further DistillConfig fields of every run (e.g. preprocess)


def suites(datasets_dir: str | Path) -> dict[str, Suite]:
    d = Path(datasets_dir)
    mnist, fashion = d / "mnist-train.npz", d / "fashion-mnist-train.npz"
    quick_cells: tuple[Cell, ...] = (Cell("digits (sample)", "sample"),)
    full_cells = quick_cells
    if mnist.exists():
        quick_cells = (Cell("MNIST 3 vs 5", str(mnist), ("3", "5"), 600), Cell("MNIST 10 classes", str(mnist), None, 200))
        full_cells = (Cell("MNIST 3 vs 5", str(mnist), ("3", "5"), None), Cell("MNIST 10 classes", str(mnist), None, 1200))
        if fashion.exists():
            full_cells += (Cell("Fashion-MNIST 10 classes", str(fashion), None, 1200),)
    common = dict(lam=1e-2, lr=0.03, kernel="ntk-fc", losses=LOSSES,
                  variants=(("hinge, joint α̃", (("loss", "hinge"), ("alpha_mode", "joint"))),))
    quick = Suite(quick_cells, (1, 10), 1000, networks=("mlp", "convnet"), seeds=2, epochs=QUICK_EPOCHS,
                  transfer_test=2000, scaling_n=(1000, 4000, 12000, 60000), transfer_ipcs=(1,), **common)
    cifar = d / "cifar10-train-1.npz"          # with cifar10-train-2.npz: all 50,000 training images
    # every cell trains on 10,000 real images: 1,000 per class, or all 5,000 per class of a pair
    # (the hinge teacher's coordinate descent then holds the 10,000² Gram matrix, 0.8 GB)
    cifar_cells = (Cell("CIFAR-10 10 classes", str(cifar), None, 1000),) + tuple(
        Cell(f"CIFAR-10 {a} vs {b}", str(cifar), (a, b)) for a, b in
        (("airplane", "automobile"), ("cat", "dog"), ("deer", "horse"))) if cifar.exists() else quick_cells
    cifar_suite = replace(
        quick, cells=cifar_cells, steps=300, lam=1e-4, kernel="rf-conv",
        # fixed networks (no RFAD redraws): DGKIP's teacher lives in their feature space, and KIP then
        # reads the real batch's features from a cache instead of running the ConvNets on it each step
        kernel_params=(("width", 128), ("n_models", 2), ("redraw_every", 0)),
        losses=("cross-entropy", "hinge"), variants=(), networks=("convnet",), transfer_ipcs=None,
        scaling_n=(1000, 4000, 12000, 50000), memory_budget_gb=12.0, teacher_max_iter=10)
    return {
        "quick": quick,
        "cifar": cifar_suite,                             # CIFAR-10, 10 classes and three pairs, rf-conv
        # the 10-class IPC-1 cell as the anchors' papers set it up: ZCA whitening, learned labels, more steps
        "cifar-zca": replace(cifar_suite, cells=cifar_cells[:1], ipcs=(1,), steps=1000, losses=("cross-entropy",),
                             config=(("preprocess", "zca"), ("learn_labels", True))),
        "mnist": replace(quick, transfer_ipcs=None),      # + transfer at IPC 10 (837 s measured on 2 busy cores)
        "full": Suite(full_cells, (1, 10, 50), 1000, networks=("mlp", "convnet", "resnet18"), seeds=3, epochs=None,
                      transfer_test=10000, scaling_n=(1000, 4000, 12000, 60000), **common),
    }


def _distil(cfg: DistillConfig, dataset: Dataset) -> tuple[dict[str, Any], DistillResult]:
    done = [e for e in run(cfg, dataset=dataset) if isinstance(e, Done)][-1]
    m = done.metrics
    return ({"teacher": m["teacher_test_accuracy"], "distilled": m["distilled_test_accuracy"],
             "random": m["random_subset_test_accuracy"], "gap": m["gap"], "radius": m["radius"],
             "consistency": m["certified_consistency"], "teacher_s": m["teacher_seconds"],
             "teacher_solver": m["teacher_solver"], "teacher_rel_gap": m["teacher_rel_gap"], "seconds": m["seconds"],
             "steps_per_s": m["steps_per_second"], "n": m["n_train"], "peak_rss_mb": peak_rss_mb()},
            done.result)


def _kernel_accuracy(cfg: DistillConfig, kernel: Kernel, x: np.ndarray, y: np.ndarray, test: TestPoints,
                     n_classes: int) -> float:
    """Test accuracy of the same-loss kernel model trained on (x, y) (preprocessed NHWC arrays)."""
    loss = make_loss(cfg.loss)
    xs = to_nchw(x).double()
    sol, _ = train_on(kernel, loss, cfg.lam, xs, loss.targets(torch.from_numpy(y), n_classes))
    return test.accuracy(kernel, xs, sol.alpha, cfg.lam)


def _transfer(images: np.ndarray, labels: np.ndarray, targets: np.ndarray | None, x_test: np.ndarray,
              y_test: np.ndarray, suite: Suite) -> dict[str, dict[str, Any]]:
    out = {}
    for ev in run_transfer(images, labels, targets, x_test, y_test, networks=suite.networks,
                                seeds=suite.seeds, epochs=suite.epochs):
        if isinstance(ev, TransferSummary):
            out[ev.network] = {"mean": ev.mean, "std": ev.std, "accuracies": ev.accuracies, "seconds": ev.seconds}
    return out


def _print_row(cell: Cell, ipc: int, loss: str, r: dict[str, Any]) -> None:
    print(f"  {cell.label:18s} IPC {ipc:3d} DGKIP {loss:16s} acc {r['distilled']:.4f} (teacher {r['teacher']:.4f}, "
          f"random {r['random']:.4f}) teacher {r['teacher_s']:.1f} s, total {r['seconds']:.1f} s", flush=True)


def run_cell(cell: Cell, ipc: int, suite: Suite, loaded: Dataset) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Kernel-accuracy rows and transfer rows of one dataset × IPC cell; ``loaded``: the cell's data,
    read once for all its IPCs and runs."""
    base = DistillConfig(data=cell.data, classes=list(cell.classes) if cell.classes else None,
                         max_per_class=cell.cap, ipc=ipc, kernel=suite.kernel, kernel_params=dict(suite.kernel_params),
                         lam=suite.lam, steps=suite.steps, lr=suite.lr, eval_every=0, snapshot_every=0,
                         memory_budget_gb=suite.memory_budget_gb, teacher_max_iter=suite.teacher_max_iter,
                         **dict(suite.config))
    rows, sets = [], {}
    for loss in cell.losses or suite.losses:
        r, res = _distil(base.replace(loss=loss), loaded)
        rows.append({"dataset": cell.label, "ipc": ipc, "method": "DGKIP", "loss": loss, **r})
        sets[("DGKIP", loss)] = res
        _print_row(cell, ipc, loss, r)
    for label, overrides in suite.variants:
        r, _ = _distil(base.replace(**dict(overrides)), loaded)
        rows.append({"dataset": cell.label, "ipc": ipc, "method": "DGKIP", "loss": label, **r})
        _print_row(cell, ipc, label, r)
    r, res = _distil(base.replace(loss="squared", mode="kip"), loaded)
    # KIP's set is scored by KIP's own model (KRR with its ridge convention, issue 17); the certified
    # λ·m model's accuracy is kept as distilled_lam_m
    r = {**r, "distilled": res.metrics["kip_test_accuracy"], "distilled_lam_m": r["distilled"]}
    rows.append({"dataset": cell.label, "ipc": ipc, "method": "KIP", "loss": "squared", **r,
                 "kip_ridge": res.config.kip_ridge})           # the resolved ridge convention (issue 17)
    sets[("KIP", "squared")] = res
    print(f"  {cell.label:18s} IPC {ipc:3d} KIP   squared        acc {r['distilled']:.4f} total {r['seconds']:.1f} s", flush=True)

    # baselines and transfer, in the preprocessed space of the cross-entropy DGKIP run
    ref = sets.get(("DGKIP", TRANSFER_LOSS)) or next(iter(sets.values()))
    cfg = ref.config
    ds = prepare_dataset(cfg, loaded)
    pre = ref.preprocess
    x_train, y_train = pre.transform(ds.x_train), ds.y_train.astype(np.int64)
    test_idx = stratified_cap(ds.y_test, suite.transfer_test, cfg.seed)
    x_test, y_test = pre.transform(ds.x_test[test_idx]), ds.y_test[test_idx].astype(np.int64)
    eval_idx = stratified_cap(ds.y_test, MAX_EVAL_TEST, cfg.seed)
    x_eval, y_eval = pre.transform(ds.x_test[eval_idx]), ds.y_test[eval_idx].astype(np.int64)
    t = time.perf_counter()
    xk, yk = kmeans_centres(x_train, y_train, ipc, cfg.seed)
    k_s = time.perf_counter() - t
    xr, yr = random_subset(x_train, y_train, ipc, cfg.seed + 1)      # the run's own random floor
    n_classes = len(ds.classes)
    kernel = make_kernel(cfg.kernel, **cfg.kernel_params)
    test = TestPoints.build(kernel, to_nchw(x_eval).double(), torch.from_numpy(y_eval))   # φ(test) once
    for name, (x, y) in (("k-means", (xk, yk)), ("random", (xr, yr))):
        acc = _kernel_accuracy(cfg, kernel, x, y, test, n_classes)
        rows.append({"dataset": cell.label, "ipc": ipc, "method": name, "loss": cfg.loss, "teacher": ref.metrics["teacher_test_accuracy"],
                     "distilled": acc, "random": ref.metrics["random_subset_test_accuracy"], "gap": float("nan"),
                     "radius": float("nan"), "consistency": float("nan"), "teacher_s": 0.0, "teacher_solver": "",
                     "seconds": k_s if name == "k-means" else 0.0, "steps_per_s": float("nan"), "n": len(y_train),
                     "peak_rss_mb": peak_rss_mb()})
        print(f"  {cell.label:18s} IPC {ipc:3d} {name:7s} {cfg.loss:14s} acc {acc:.4f}", flush=True)

    transfer = []
    if suite.transfer_ipcs is not None and ipc not in suite.transfer_ipcs:
        return rows, []
    candidates = {f"DGKIP ({TRANSFER_LOSS})": (ref.images, ref.labels, ref.targets),
                  "KIP": (sets[("KIP", "squared")].images, sets[("KIP", "squared")].labels,
                          sets[("KIP", "squared")].targets),        # learned labels, when the suite learns them
                  "random": (xr, yr, None), "k-means": (xk, yk, None)}
    for method, (x, y, targets) in candidates.items():
        t = time.perf_counter()
        scores = _transfer(x, y, targets, x_test, y_test, suite)
        transfer.append({"dataset": cell.label, "ipc": ipc, "method": method, "networks": scores,
                         "n_test": len(y_test), "seconds": time.perf_counter() - t})
        print(f"  {cell.label:18s} IPC {ipc:3d} transfer {method:22s} " + ", ".join(
            f"{k} {100 * v['mean']:.1f} ± {100 * v['std']:.1f} %" for k, v in scores.items()), flush=True)
    return rows, transfer


def solver_ratio(n: int = 2000, d: int = 784, lam: float = 1e-3) -> list[dict[str, Any]]:
    """Our certified teacher solves vs scikit-learn on the same mean-form objectives (no intercept,
    C = 1/(λn)): logistic (lbfgs) and hinge (liblinear's dual coordinate descent), both on the
    linear kernel's explicit features x/√d. Ours works on the n × n kernel (Newton-CG, coordinate
    descent). The time ratio is ours / scikit-learn's; primal values are compared."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    from engine.operators import build_operator
    from engine.solver import solve

    g = np.random.default_rng(0)
    x = g.standard_normal((n, d))
    y = (x[:, :10].sum(1) + 0.5 * g.standard_normal(n) > 0).astype(np.int64)
    xt = torch.from_numpy(x)
    rows = []

    loss, k = make_loss("logistic"), make_kernel("linear")
    Y = loss.targets(torch.from_numpy(y), 2)                    # one ±1 column
    t = time.perf_counter()
    op = build_operator(k, xt, 2**34)
    sol = solve(op.matvec, Y, loss, lam, tol=1e-8)
    ours = time.perf_counter() - t
    t = time.perf_counter()
    sk = LogisticRegression(C=1 / (lam * n), fit_intercept=False, tol=1e-10, max_iter=10000).fit(x / np.sqrt(d), y)
    theirs = time.perf_counter() - t
    w = sk.coef_.ravel()
    z = (2 * y - 1) * (x / np.sqrt(d) @ w)
    rows.append({"problem": "logistic, linear kernel", "reference": "LogisticRegression(lbfgs)", "n": n, "d": d,
                 "ours_s": ours, "sklearn_s": theirs, "time_ratio": ours / theirs, "ours_primal": sol.primal,
                 "sklearn_primal": float(np.mean(np.logaddexp(0, -z)) + lam / 2 * w @ w), "ours_rel_gap": sol.rel_gap})

    loss, k = make_loss("hinge"), make_kernel("linear")
    Y = loss.targets(torch.from_numpy(y), 2)                    # one ±1 column
    t = time.perf_counter()
    op = build_operator(k, xt, 2**34, prefer_features=False)          # dense K: coordinate descent
    sol = solve(op.matvec, Y, loss, lam, tol=1e-8, dense=op.dense)
    ours = time.perf_counter() - t
    t = time.perf_counter()
    sk = LinearSVC(loss="hinge", C=1 / (lam * n), fit_intercept=False, dual=True, tol=1e-8, max_iter=1_000_000).fit(x / np.sqrt(d), y)
    theirs = time.perf_counter() - t
    w = sk.coef_.ravel()
    z = (2 * y - 1) * (x / np.sqrt(d) @ w)
    rows.append({"problem": "hinge, linear kernel", "reference": "LinearSVC(liblinear dual CD)", "n": n, "d": d,
                 "ours_s": ours, "sklearn_s": theirs, "time_ratio": ours / theirs, "ours_primal": sol.primal,
                 "sklearn_primal": float(np.mean(np.maximum(0, 1 - z)) + lam / 2 * w @ w), "ours_rel_gap": sol.rel_gap})
    return rows


def kernel_ratio(n: int = 2000, d: int = 784) -> list[dict[str, float]]:
    """Kernel evaluation time vs a plain (n × d)·(d × n) matmul of the same shapes (float32)."""
    x = torch.randn(n, d)
    t_mm = best_of(lambda: x @ x.T)
    rows = []
    for name, params in (("linear", {}), ("rbf", {"bandwidth": 30.0}), ("nngp-fc", {"depth": 3}), ("ntk-fc", {"depth": 3}),
                         ("rf-fc", {"width": 1024, "n_models": 2})):
        k = make_kernel(name, **params)
        with torch.no_grad():
            t_k = best_of(lambda: k(x, x))
        rows.append({"kernel": name, "n": n, "d": d, "kernel_s": t_k, "matmul_s": t_mm, "matmul_fraction": t_mm / t_k})
    return rows


def step_scaling(ns: tuple[int, ...], d: int = 784, m: int = 10, C: int = 10) -> list[dict[str, Any]]:
    """Seconds per DGKIP step (teacher scores f*(x̃) + K_SS + backward) as the number n of real
    points behind the teacher grows; explicit-feature kernels (rf-fc) use w* and stay flat in n."""
    rows = []
    for name, params in (("ntk-fc", {"depth": 3}), ("rbf", {"bandwidth": 30.0}), ("rf-fc", {"width": 1024, "n_models": 2})):
        k = make_kernel(name, **params)
        for n in ns:
            xd = torch.randn(n, d)
            coef = torch.randn(n, C) / n
            weights = torch.randn(k.features(xd[:2]).shape[1], C) if k.explicit else None
            xs = torch.randn(m, d, requires_grad=True)

            def step():                          # as the step loop does it: φ(x̃) once for explicit kernels
                if weights is not None:
                    f = k.features(xs)
                    z, kss = f @ weights, f @ f.T
                else:
                    z, kss = k(xs, xd) @ coef, k(xs)
                (z.square().sum() + kss.sum()).backward()

            flops = (step_flops(k, m, (d,), C, weights.shape[0]) if weights is not None
                     else step_flops(k, m, (d,), n))
            with torch_threads(step_threads(torch.device("cpu"), flops)):      # the step loop's policy before timing
                rows.append({"kernel": name, "n": n, "step_s": best_of(step, repeats=2)})
            print(f"  step time {name:8s} n = {n:6d}: {rows[-1]['step_s'] * 1e3:.1f} ms", flush=True)
    return rows


def to_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    mach = report["machine"]
    lines = [f"# DGKIP Studio benchmark ({report['suite']} suite)", ""]
    if report.get("note"):
        lines.append(f"Note: {report['note']}  ")
    if not report.get("complete", True):
        lines.append("**Incomplete:** written after a finished cell; the suite had not ended (no ratios yet).  ")
    lines += [f"Command: `{report['command']}`  ", f"Date: {report['date']}  ",
             f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gib']} GiB, {mach['platform']}, "
             f"Python {mach['python']}, torch {mach['torch']} ({mach['threads']} threads), GPU: {mach['cuda'] or 'none'}  ",
             f"Wall time: {report['seconds']:.0f} s; peak memory (process): {report['peak_rss_mb']:.0f} MiB", "",
             f"Settings: kernel {s['kernel']} ("
             + ", ".join(f"{k} = {v}" for k, v in resolved_params(s['kernel'], s.get("kernel_params", ()))) + ")"
             + f", λ = {s['lam']:g} (mean form), {s['steps']} Adam steps at lr {s['lr']:g}, "
             "synthetic images initialised from a class-balanced real sample, "
             + ("ZCA-whitened" if dict(s.get("config", ())).get("preprocess") == "zca" else "standardised")
             + " pixels" + ("" if not s.get("config") else
                           " (every run: " + ", ".join(f"{k} = {v}" for k, v in s["config"]) + ")") + "; "
             "`random` = a class-balanced real subset of the same size (seed + 1), `k-means` = per-class centres.", "",
             "## Kernel test accuracy (%) of the same-loss kernel model trained on each set", "",
             "| dataset | IPC | method | loss | teacher | **set** | random subset | certified gap | radius | teacher s | total s | steps/s | peak MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        gap = "—" if r["gap"] != r["gap"] else f"{r['gap']:.3g}"
        rad = "—" if r["radius"] != r["radius"] else f"{r['radius']:.3g}"
        sps = "—" if r["steps_per_s"] != r["steps_per_s"] else f"{r['steps_per_s']:.0f}"
        method = r["method"] + (f" ({r['kip_ridge']} ridge)" if r.get("kip_ridge") else "")
        lines.append(f"| {r['dataset']} | {r['ipc']} | {method} | {r['loss']} | {pct(r['teacher'])} | "
                     f"**{pct(r['distilled'])}** | {pct(r['random'])} | {gap} | {rad} | {r['teacher_s']:.1f} | "
                     f"{r['seconds']:.1f} | {sps} | {r['peak_rss_mb']:.0f} |")
    nets = list(dict.fromkeys(n for t in report["transfer"] for n in t["networks"]))
    lines += ["", f"## Transfer test accuracy (%), mean ± std over {s['seeds']} seeds, {s['epochs'] or 'recipe'} epochs "
              "(networks trained from scratch on each set; tested on a stratified sample of the real test split)", "",
              "| dataset | IPC | set | " + " | ".join(nets) + " | test images | seconds |",
              "|---|---|---|" + "---|" * len(nets) + "---|---|"]
    for t in report["transfer"]:
        cells = [f"{100 * t['networks'][n]['mean']:.1f} ± {100 * t['networks'][n]['std']:.1f}" if n in t["networks"] else "—" for n in nets]
        lines.append(f"| {t['dataset']} | {t['ipc']} | {t['method']} | " + " | ".join(cells) + f" | {t['n_test']} | {t['seconds']:.0f} |")
    lines += ["", "## Teacher solver vs scikit-learn (same mean-form objective)", "",
              "| problem | reference | n | ours s | scikit-learn s | time ratio ours/sklearn | our rel. gap | primal ours | primal sklearn |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in report["solver"]:
        lines.append(f"| {r['problem']} | {r['reference']} | {r['n']} | {r['ours_s']:.3f} | {r['sklearn_s']:.3f} | "
                     f"{r['time_ratio']:.2f} | {r['ours_rel_gap']:.1e} | {r['ours_primal']:.8f} | {r['sklearn_primal']:.8f} |")
    lines += ["", "## Kernel evaluation vs a plain matmul of the same shapes (float32, no grad)", "",
              "| kernel | n | d | kernel s | matmul s | fraction of matmul throughput |", "|---|---|---|---|---|---|"]
    for r in report["kernels"]:
        lines.append(f"| {r['kernel']} | {r['n']} | {r['d']} | {r['kernel_s']:.4f} | {r['matmul_s']:.4f} | {r['matmul_fraction']:.2f} |")
    lines += ["", "## Distillation step time as n grows (m = 10 synthetic points, d = 784, 10 classes)", "",
              "| kernel | " + " | ".join(f"n = {n:,}" for n in report["settings"]["scaling_n"]) + " |",
              "|---|" + "---|" * len(report["settings"]["scaling_n"])]
    for name in dict.fromkeys(r["kernel"] for r in report["scaling"]):
        ms = [f"{1e3 * r['step_s']:.1f} ms" for r in report["scaling"] if r["kernel"] == name]
        lines.append(f"| {name} | " + " | ".join(ms) + " |")
    return "\n".join(lines) + "\n"


def bench(suite_name: str | Suite, out: str | Path, datasets_dir: str | Path, command: str = "") -> dict[str, Any]:
    """Run a suite (by name, or a :class:`Suite`), write ``bench.json`` and ``bench.md`` into ``out``:
    after every cell (``"complete": false``, so a long suite that is stopped keeps its finished
    cells), and once more with the ratios at the end."""
    suite = suites(datasets_dir)[suite_name] if isinstance(suite_name, str) else suite_name
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"suite": suite_name if isinstance(suite_name, str) else "custom", "command": command,
              "date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(),
              "settings": {k: v for k, v in suite.__dict__.items() if k != "cells"},
              "results": [], "transfer": [], "solver": [], "kernels": [], "scaling": [], "complete": False}

    def write() -> None:
        report.update(seconds=time.perf_counter() - t0, peak_rss_mb=peak_rss_mb())
        (out / "bench.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
        (out / "bench.md").write_text(to_markdown(report), encoding="utf-8")

    print("result tables…", flush=True)
    for cell in suite.cells:
        loaded = load_dataset(cell.data, holdout_fraction=DistillConfig.holdout_fraction, seed=DistillConfig.seed)
        for ipc in suite.ipcs:
            r, t = run_cell(cell, ipc, suite, loaded)
            report["results"] += r
            report["transfer"] += t
            write()
    print("solver vs scikit-learn…", flush=True)
    report["solver"] = solver_ratio(suite.ratio_n)
    print("kernels vs matmul…", flush=True)
    report["kernels"] = kernel_ratio(suite.ratio_n)
    print("step time scaling…", flush=True)
    report["scaling"] = step_scaling(suite.scaling_n)
    report["complete"] = True
    write()
    return report


def smoke_suite() -> Suite:
    """A seconds-long suite on the built-in digits (tests)."""
    return replace(suites("/nonexistent")["quick"], ipcs=(1,), steps=3, losses=("cross-entropy", "hinge"),
                   networks=("mlp",), seeds=2, epochs=2, transfer_test=200, scaling_n=(100, 200), ratio_n=200,
                   variants=(("hinge, joint α̃", (("loss", "hinge"), ("alpha_mode", "joint"))),))
