"""``dgkip-engine bench``: result tables and performance ratios measured in one run (issue 6).

Every ratio compares against a reference measured in the same process on the same data: our
teacher solve vs scikit-learn on the same objective, our kernel vs a plain matrix product of the
same shapes, and the distillation step time as n grows. Nothing here is asserted; it prints and
writes ``bench.md`` and ``bench.json``.

Suites: ``quick`` (built-in digits always; MNIST class pair and 10 classes from ../shared/datasets
when present, capped per class; a few minutes on 2 CPU cores) and ``full`` (uncapped, more steps,
IPC 1/10/50; meant for a GPU machine).
"""
from __future__ import annotations

import json
import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine import __version__
from engine.config import DistillConfig
from engine.distill import run
from engine.events import Done

LOSSES = ("squared", "logistic", "hinge", "squared-hinge", "cross-entropy")


@dataclass(frozen=True)
class Suite:
    datasets: tuple[tuple[str, str, tuple[str, ...] | None, int | None], ...]   # (label, data, classes, cap)
    ipcs: tuple[int, ...]
    steps: int
    scaling_n: tuple[int, ...]


def _suites(datasets_dir: Path) -> dict[str, Suite]:
    mnist = datasets_dir / "mnist-train.npz"
    real = mnist.exists()
    quick = [("digits (sample)", "sample", None, None)]
    full = list(quick)
    if real:
        quick += [("MNIST 3 vs 5", str(mnist), ("3", "5"), 600), ("MNIST 10 classes", str(mnist), None, 200)]
        full += [("MNIST 3 vs 5", str(mnist), ("3", "5"), None), ("MNIST 10 classes", str(mnist), None, 1200)]
    return {"quick": Suite(tuple(quick), (1, 10), 100, (1000, 4000, 12000)),
            "full": Suite(tuple(full), (1, 10, 50), 1000, (1000, 4000, 12000, 60000))}


def _distil(cfg: DistillConfig) -> dict[str, Any]:
    done = [e for e in run(cfg) if isinstance(e, Done)][-1]
    m = done.metrics
    return {"teacher": m["teacher_test_accuracy"], "distilled": m["distilled_test_accuracy"],
            "random": m["random_subset_test_accuracy"], "gap": m["gap"], "radius": m["radius"],
            "consistency": m["certified_consistency"], "teacher_s": m["teacher_seconds"],
            "seconds": m["seconds"], "steps_per_s": m["steps_per_second"], "n": m["n_train"]}


def result_table(suite: Suite, kernel: str = "ntk-fc", lam: float = 1e-3) -> list[dict[str, Any]]:
    rows = []
    for label, data, classes, cap in suite.datasets:
        for ipc in suite.ipcs:
            base = DistillConfig(data=data, classes=list(classes) if classes else None, max_per_class=cap,
                                 ipc=ipc, kernel=kernel, lam=lam, steps=suite.steps, eval_every=0,
                                 snapshot_every=0, lr=0.01)
            for loss in LOSSES:
                r = _distil(base.replace(loss=loss))
                rows.append({"dataset": label, "ipc": ipc, "method": "DGKIP", "loss": loss, **r})
                print(f"  {label:18s} IPC {ipc:3d} DGKIP {loss:14s} acc {r['distilled']:.4f} "
                      f"(teacher {r['teacher']:.4f}, random {r['random']:.4f}) {r['seconds']:.1f} s", flush=True)
            r = _distil(base.replace(loss="squared", mode="kip"))
            rows.append({"dataset": label, "ipc": ipc, "method": "KIP", "loss": "squared", **r})
            print(f"  {label:18s} IPC {ipc:3d} KIP   squared        acc {r['distilled']:.4f} {r['seconds']:.1f} s", flush=True)
    return rows


def _timeit(fn, repeat: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def solver_ratio(n: int = 2000, d: int = 784, lam: float = 1e-3) -> dict[str, float]:
    """Our certified logistic solve vs scikit-learn's lbfgs on the same mean-form objective."""
    from sklearn.linear_model import LogisticRegression

    from engine.kernels import make_kernel
    from engine.losses import make_loss
    from engine.operators import build_operator
    from engine.solver import solve

    g = np.random.default_rng(0)
    x = g.standard_normal((n, d))
    y = (x[:, :10].sum(1) + 0.5 * g.standard_normal(n) > 0).astype(np.int64)
    loss, k = make_loss("logistic"), make_kernel("linear")
    xt = torch.from_numpy(x)
    Y = loss.targets(torch.from_numpy(y), 2)[:, 1:]
    t = time.perf_counter()
    op = build_operator(k, xt, 2**34)
    sol = solve(op.matvec, Y, loss, lam, tol=1e-8)
    ours = time.perf_counter() - t
    t = time.perf_counter()
    sk = LogisticRegression(C=1 / (lam * n), fit_intercept=False, tol=1e-10, max_iter=10000).fit(x / np.sqrt(d), y)
    theirs = time.perf_counter() - t
    w = sk.coef_.ravel()
    z = (2 * y - 1) * (x / np.sqrt(d) @ w)
    p_sk = float(np.mean(np.logaddexp(0, -z)) + lam / 2 * w @ w)
    return {"n": n, "d": d, "ours_s": ours, "sklearn_s": theirs, "time_ratio": ours / theirs,
            "ours_primal": sol.primal, "sklearn_primal": p_sk, "ours_rel_gap": sol.rel_gap}


def kernel_ratio(n: int = 2000, d: int = 784) -> list[dict[str, float]]:
    """Kernel evaluation time vs a plain (n × d)·(d × n) matmul of the same shapes (float32)."""
    from engine.kernels import make_kernel

    x = torch.randn(n, d)
    t_mm = _timeit(lambda: x @ x.T)
    rows = []
    for name, params in (("linear", {}), ("rbf", {"bandwidth": 30.0}), ("nngp-fc", {"depth": 3}), ("ntk-fc", {"depth": 3})):
        k = make_kernel(name, **params)
        with torch.no_grad():
            t_k = _timeit(lambda: k(x, x))
        rows.append({"kernel": name, "n": n, "d": d, "kernel_s": t_k, "matmul_s": t_mm, "matmul_fraction": t_mm / t_k})
    return rows


def step_scaling(ns: tuple[int, ...], d: int = 784, m: int = 10, C: int = 10) -> list[dict[str, float]]:
    """Seconds per DGKIP step (teacher scores f*(x̃) + K_SS + backward) as the number n of real
    points behind the teacher grows; explicit-feature kernels (rf-fc) stay flat in n."""
    from engine.kernels import make_kernel

    rows = []
    for name, params in (("ntk-fc", {"depth": 3}), ("rf-fc", {"width": 1024, "n_models": 2})):
        k = make_kernel(name, **params)
        for n in ns:
            xd = torch.randn(n, d)
            coef = torch.randn(n, C) / n
            weights = torch.randn(k.features(xd[:2]).shape[1], C) if k.explicit else None
            xs = torch.randn(m, d, requires_grad=True)

            def step():
                z = k.features(xs) @ weights if weights is not None else k(xs, xd) @ coef
                (z.square().sum() + k(xs).sum()).backward()

            rows.append({"kernel": name, "n": n, "step_s": _timeit(step, repeat=2)})
            print(f"  step time {name:8s} n = {n:6d}: {rows[-1]['step_s'] * 1e3:.1f} ms", flush=True)
    return rows


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "engine": __version__}


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"# DGKIP Studio benchmark ({report['suite']} suite)", "",
             f"Command: `{report['command']}`  ", f"Machine: `{json.dumps(report['machine'])}`  ",
             f"Wall time: {report['seconds']:.0f} s, peak memory {report['peak_rss_mb']:.0f} MiB", "",
             "## Kernel test accuracy of the distilled set (ntk-fc, λ = 1e-3, same loss for training and test)", "",
             "| dataset | IPC | method | loss | teacher | distilled | random subset | certified gap | radius | teacher s | total s | steps/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(f"| {r['dataset']} | {r['ipc']} | {r['method']} | {r['loss']} | {r['teacher']:.4f} | "
                     f"**{r['distilled']:.4f}** | {r['random']:.4f} | {r['gap']:.3e} | {r['radius']:.3g} | "
                     f"{r['teacher_s']:.1f} | {r['seconds']:.1f} | {r['steps_per_s']:.1f} |")
    s = report["solver"]
    lines += ["", "## Teacher solver vs scikit-learn (logistic, linear kernel, same objective)", "",
              f"n = {s['n']}, d = {s['d']}: ours {s['ours_s']:.3f} s (relative gap {s['ours_rel_gap']:.1e}), "
              f"scikit-learn lbfgs {s['sklearn_s']:.3f} s, time ratio ours/sklearn = {s['time_ratio']:.2f}; "
              f"primal ours {s['ours_primal']:.10f} vs sklearn {s['sklearn_primal']:.10f}", "",
              "## Kernel evaluation vs a plain matmul of the same shapes (float32, no grad)", "",
              "| kernel | n | d | kernel s | matmul s | fraction of matmul throughput |", "|---|---|---|---|---|---|"]
    for r in report["kernels"]:
        lines.append(f"| {r['kernel']} | {r['n']} | {r['d']} | {r['kernel_s']:.4f} | {r['matmul_s']:.4f} | {r['matmul_fraction']:.2f} |")
    lines += ["", "## Distillation step time as n grows (m = 10 synthetic points, d = 784)", "",
              "| kernel | n | ms per step |", "|---|---|---|"]
    for r in report["scaling"]:
        lines.append(f"| {r['kernel']} | {r['n']} | {1e3 * r['step_s']:.1f} |")
    return "\n".join(lines) + "\n"


def bench(suite_name: str, out: str | Path, datasets_dir: str | Path, command: str = "") -> dict[str, Any]:
    suite = _suites(Path(datasets_dir))[suite_name]
    t0 = time.perf_counter()
    print("results table…", flush=True)
    results = result_table(suite)
    print("solver vs scikit-learn…", flush=True)
    solver = solver_ratio()
    print("kernels vs matmul…", flush=True)
    kernels = kernel_ratio()
    print("step time scaling…", flush=True)
    scaling = step_scaling(suite.scaling_n)
    report = {"suite": suite_name, "command": command, "machine": machine(), "results": results,
              "solver": solver, "kernels": kernels, "scaling": scaling, "seconds": time.perf_counter() - t0,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "bench.md").write_text(to_markdown(report), encoding="utf-8")
    return report
