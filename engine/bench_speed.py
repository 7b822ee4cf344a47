"""``dgkip-engine bench --suite speed``: kernel evaluation against a plain matmul, and step times.

1. **Kernels**: k(a, b) for a, b of ``KERNEL_SHAPE`` (2,000 × 784, MNIST-sized) without gradients (the
   teacher, certificate and evaluation path) and with gradients on ``a`` (the distillation step's
   forward), against the matmul a @ bᵀ of the same shapes measured in the same loop: ``fraction`` =
   matmul time / kernel time (1.0 would be a kernel as cheap as its first layer's matmul). Median of
   ``REPEATS`` interleaved timings each, torch's intra-op threads stated.
2. **Steps**: milliseconds per distillation step of :func:`engine.distill.run` on the built-in sample
   (``STEP_CASES``), from the run's own steps/s (its clock starts after the optimizer is built).

3. **KIP against the reference** (only with ``DGKIP_PEER_PYTHON`` naming a Python that has
   ``neural-tangents`` and ``jax``): our KIP step (kernel-ridge loss on a ``PEER_POOL``-image pool,
   backward, Adam) against KIP's jit-compiled JAX step (:mod:`engine.peer_kip`) on the same data and
   initial images (standard normal, d = 784), both processes on one core with one thread, three
   interleaved rounds of ``PEER_STEPS`` steps; per-step median of each round, then min and median over
   rounds, and the two losses at the initial images.

Nothing is asserted; ``bench.md`` and ``bench.json`` are written.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
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
PEER_POOL, PEER_STEPS, PEER_ROUNDS, PEER_LAM, PEER_LR = 2000, 60, 3, 1e-6, 0.01


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
                     "steps": done.metrics["steps"], "ms_per_step": 1e3 / sps if sps else float("nan")})
        print(f"{case}: {rows[-1]['ms_per_step']:.2f} ms per step", flush=True)
    return rows


def _our_kip_steps(data: dict[str, np.ndarray], steps: int) -> tuple[float, list[float]]:
    """Our KIP step on ``data`` (engine.peer_kip's layout), one thread: (loss at the initial images,
    seconds of each step after a warm-up step)."""
    from engine.kip import kip_loss
    torch.set_num_threads(1)
    kernel = make_kernel("ntk-fc")
    xb, yb = torch.from_numpy(data["xb"]), torch.from_numpy(data["yb"])
    xs, ys = torch.from_numpy(data["xs"]).clone().requires_grad_(True), torch.from_numpy(data["ys"])
    opt = torch.optim.Adam([xs], lr=float(data["lr"]))
    seconds, first = [], None
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = kip_loss(kernel, xs, ys, xb, yb, float(data["lam"]))
        loss.backward()
        opt.step()
        if i == 0:
            first = loss.item()
        else:
            seconds.append(time.perf_counter() - t0)
    return first, seconds


def peer_rows(peer_python: str) -> list[dict[str, Any]]:
    """KIP steps, ours against the reference (module doc, 3.)."""
    import subprocess
    import tempfile
    rows = []
    rng = np.random.default_rng(0)
    env = {**os.environ, "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
           "OMP_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu"}
    script = Path(__file__).with_name("peer_kip.py")
    with tempfile.TemporaryDirectory() as tmp:
        for ipc in (1, 10):
            m = 10 * ipc
            data = {"xb": rng.standard_normal((PEER_POOL, 784)).astype(np.float32),
                    "yb": np.eye(10, dtype=np.float32)[rng.integers(0, 10, PEER_POOL)],
                    "xs": rng.standard_normal((m, 784)).astype(np.float32),
                    "ys": np.eye(10, dtype=np.float32)[np.arange(m) % 10], "lam": np.float64(PEER_LAM),
                    "lr": np.float64(PEER_LR)}
            path = Path(tmp) / f"ipc{ipc}.npz"
            np.savez(path, **data)
            ours, peer, loss_ours, loss_peer = [], [], None, None
            for _ in range(PEER_ROUNDS):          # interleaved: both see the same load
                proc = subprocess.run([peer_python, str(script), str(path), str(PEER_STEPS)], env=env,
                                      capture_output=True, text=True, preexec_fn=lambda: os.sched_setaffinity(0, {0}))
                if proc.returncode != 0:
                    raise RuntimeError(f"the reference KIP failed: {proc.stderr[-1500:]}")
                answer = json.loads(proc.stdout.strip().splitlines()[-1])
                peer.append(statistics.median(answer["seconds"]) * 1e3)
                loss_peer = answer["loss0"]
                before = os.sched_getaffinity(0)
                os.sched_setaffinity(0, {0})
                try:
                    loss_ours, secs = _our_kip_steps(data, PEER_STEPS)
                finally:
                    os.sched_setaffinity(0, before)
                ours.append(statistics.median(secs) * 1e3)
            rows.append({"ipc": ipc, "pool": PEER_POOL, "ours_ms": ours, "peer_ms": peer, "jax": answer["jax"],
                         "ratio_min": min(ours) / min(peer), "ratio_median": statistics.median(ours) / statistics.median(peer),
                         "loss_ours": loss_ours, "loss_peer": loss_peer})
            print(f"KIP IPC {ipc}: ours {min(ours):.2f}/{statistics.median(ours):.2f} ms, reference {min(peer):.2f}/"
                  f"{statistics.median(peer):.2f} ms (min/median), ratio {rows[-1]['ratio_min']:.2f}/"
                  f"{rows[-1]['ratio_median']:.2f}; losses {loss_ours:.6g} / {loss_peer:.6g}", flush=True)
    return rows


def bench_speed(out: str | Path, command: str = "") -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    report = {"command": command, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "torch": torch.__version__,
              "threads": torch.get_num_threads(), "load_average_before": load_before, "shape": KERNEL_SHAPE,
              "kernels": kernel_rows(), "steps": step_rows()}
    peer_python = os.environ.get("DGKIP_PEER_PYTHON")
    report["peer"] = peer_rows(peer_python) if peer_python else None
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
    lines += [f"| {r['mode']} | {r['loss']} | {r['ipc']} | {r['kernel']} | {json.dumps(r['kernel_params'])} | "
              f"{r['ms_per_step']:.2f} |" for r in report["steps"]]
    if report["peer"]:
        lines += ["", f"KIP step against the reference (neural-tangents + JAX {report['peer'][0]['jax']}, jit, Adam), "
                  f"{PEER_POOL:,}-image pool, d = 784, ntk-fc depth 1, one core and one thread each, {PEER_ROUNDS} "
                  f"interleaved rounds of {PEER_STEPS} steps (ms per step, min / median over rounds):", "",
                  "| IPC | ours ms | reference ms | ours / reference | loss ours | loss reference |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['ipc']} | {min(r['ours_ms']):.2f} / {statistics.median(r['ours_ms']):.2f} | "
                  f"{min(r['peer_ms']):.2f} / {statistics.median(r['peer_ms']):.2f} | {r['ratio_min']:.2f} / "
                  f"{r['ratio_median']:.2f} | {r['loss_ours']:.6g} | {r['loss_peer']:.6g} |" for r in report["peer"]]
    else:
        lines += ["", "KIP against the reference: not run (set DGKIP_PEER_PYTHON to a Python with neural-tangents and jax)."]
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    return report
