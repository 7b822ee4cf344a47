"""``dgkip-engine bench --suite speed``: kernel evaluation against a plain matmul, and step times.

1. **Kernels**: k(a, b) for a, b of ``KERNEL_SHAPE`` (2,000 × 784, MNIST-sized) without gradients (the
   teacher, certificate and evaluation path) and with gradients on ``a`` (the distillation step's
   forward), against the matmul a @ bᵀ of the same shapes measured in the same loop: ``fraction`` =
   matmul time / kernel time (1.0 would be a kernel as cheap as its first layer's matmul). Median of
   ``REPEATS`` interleaved timings each, torch's intra-op threads stated.
2. **Steps**: milliseconds per distillation step of :func:`engine.distill.run` on the built-in sample
   (``STEP_CASES``), from the run's own steps/s (its clock starts after the optimizer is built).

Nothing is asserted; ``bench.md`` and ``bench.json`` are written. Comparisons with neural-tangents
(JAX) are not part of this suite.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from engine.config import DistillConfig
from engine.distill import run
from engine.events import Done
from engine.kernels import make_kernel

KERNEL_SHAPE = (2000, 784)
KERNELS = [("nngp-fc", {"depth": 1}), ("ntk-fc", {"depth": 1}), ("nngp-fc", {"depth": 3}), ("ntk-fc", {"depth": 3})]
REPEATS = 3
STEP_CASES = [dict(mode="dgkip", ipc=1), dict(mode="dgkip", ipc=10),
              dict(mode="kip", loss="squared", ipc=1), dict(mode="kip", loss="squared", ipc=10)]
STEPS = 200


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def kernel_rows() -> list[dict[str, Any]]:
    """One row per (kernel, dtype): median matmul, no-grad and with-grad kernel times and fractions."""
    rows = []
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        a = torch.randn(*KERNEL_SHAPE, generator=g).to(dtype)
        b = torch.randn(*KERNEL_SHAPE, generator=g).to(dtype)
        for name, params in KERNELS:
            k = make_kernel(name, **params)
            ag = a.clone().requires_grad_(True)

            def plain():
                with torch.no_grad():
                    k(a, b)

            def graph():
                k(ag, b)

            times = {"matmul": [], "kernel": [], "kernel_grad": []}
            with torch.no_grad():
                a @ b.T, plain()                       # warm-up: thread pool, allocator
            for _ in range(REPEATS):                     # interleaved: load changes hit all three alike
                with torch.no_grad():
                    times["matmul"].append(_seconds(lambda: a @ b.T))
                times["kernel"].append(_seconds(plain))
                times["kernel_grad"].append(_seconds(graph))
            med = {key: statistics.median(v) for key, v in times.items()}
            rows.append({"kernel": name, "params": k.params(), "dtype": str(dtype).removeprefix("torch."),
                         "matmul_ms": med["matmul"] * 1e3, "kernel_ms": med["kernel"] * 1e3,
                         "kernel_grad_ms": med["kernel_grad"] * 1e3,
                         "fraction": med["matmul"] / med["kernel"], "fraction_grad": med["matmul"] / med["kernel_grad"]})
            print(f"{name} {k.params()} {rows[-1]['dtype']}: matmul {rows[-1]['matmul_ms']:.1f} ms, kernel "
                  f"{rows[-1]['kernel_ms']:.1f} ms ({rows[-1]['fraction']:.2f} of matmul throughput), with gradients "
                  f"{rows[-1]['kernel_grad_ms']:.1f} ms ({rows[-1]['fraction_grad']:.2f})", flush=True)
    return rows


def step_rows() -> list[dict[str, Any]]:
    rows = []
    for case in STEP_CASES:
        cfg = DistillConfig(data="sample", device="cpu", steps=STEPS, eval_every=0, **case).validate()
        done = [e for e in run(cfg) if isinstance(e, Done)][-1]
        sps = done.metrics["steps_per_second"]
        rows.append({**case, "loss": cfg.loss, "kernel": cfg.kernel, "kernel_params": done.result.config.kernel_params,
                     "kip_ridge": cfg.kip_ridge if cfg.mode == "kip" else None,
                     "steps": done.metrics["steps"], "ms_per_step": 1e3 / sps if sps else float("nan")})
        print(f"{case}: {rows[-1]['ms_per_step']:.2f} ms per step", flush=True)
    return rows


def bench_speed(out: str | Path, command: str = "") -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    report = {"command": command, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "torch": torch.__version__,
              "threads": torch.get_num_threads(), "load_average_before": load_before, "shape": KERNEL_SHAPE,
              "kernels": kernel_rows(), "steps": step_rows()}
    report.update(seconds=time.perf_counter() - t0, load_average_after=os.getloadavg())
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    n, d = KERNEL_SHAPE
    lines = ["# Speed: kernels against a plain matmul, and step times", "",
             f"`{command}` — {report['machine']}, torch {report['torch']}, {report['threads']} threads, load average "
             f"(1 min) {load_before[0]:.1f} before and {report['load_average_after'][0]:.1f} after.", "",
             f"k(a, b) for a, b of {n:,} × {d} against a @ bᵀ of the same shapes; median of {REPEATS} interleaved "
             "timings. *Fraction*: matmul time / kernel time.", "",
             "| kernel | parameters | dtype | matmul ms | kernel ms | fraction | with gradients ms | fraction |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['kernel']} | {json.dumps(r['params'])} | {r['dtype']} | {r['matmul_ms']:.1f} | {r['kernel_ms']:.1f} | "
              f"{r['fraction']:.2f} | {r['kernel_grad_ms']:.1f} | {r['fraction_grad']:.2f} |" for r in report["kernels"]]
    lines += ["", f"Distillation steps on the built-in sample ({STEPS} steps each, the run's own steps/s):", "",
              "| mode | loss | IPC | kernel | parameters | ms per step |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']}{' (' + r['kip_ridge'] + ' ridge)' if r.get('kip_ridge') else ''} | {r['loss']} | {r['ipc']} | "
              f"{r['kernel']} | {json.dumps(r['kernel_params'])} | "
              f"{r['ms_per_step']:.2f} |" for r in report["steps"]]
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    return report
