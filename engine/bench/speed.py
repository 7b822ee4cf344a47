"""``dgkip-engine bench --suite speed``: kernel evaluation against a plain matmul, and step times.

1. **Kernels**: k(a, b) for a, b of ``KERNEL_SHAPE`` (2,000 × 784, MNIST-sized) without gradients (the
   teacher, certificate and evaluation path) and with gradients on ``a`` (the distillation step's
   forward), against the matmul a @ bᵀ of the same shapes measured in the same loop: ``fraction`` =
   matmul time / kernel time (1.0 would be a kernel as cheap as its first layer's matmul). Median of
   ``REPEATS`` interleaved timings each, torch's intra-op threads stated.
2. **Steps**: milliseconds per distillation step of :func:`engine.distill.run` on the built-in sample
   (``STEP_CASES``), from the run's own steps/s (its clock starts after the optimizer is built).

3. **Against the reference** (only with ``DGKIP_PEER_PYTHON`` naming a Python that has
   ``neural-tangents`` and ``jax``): our KIP step (kernel-ridge loss on a ``PEER_POOL``-image pool,
   backward, Adam) and our DGKIP step (cross-entropy, exact teacher on a pool of that size) against
   KIP's jit-compiled JAX step (:mod:`engine.bench.peer.kip_step`) on the same data and initial images, d =
   784: a standard normal pool, and (when the ``datasets`` folder has mnist-train.npz) an MNIST pool
   standardised per channel as a run does, whose constant border pixels the fixed pool's products fold
   out (:data:`engine.kernels.fc_fused.CONST_MIN_FRACTION`); on one core with one thread and on two cores with two threads, three
   interleaved rounds of ``PEER_STEPS`` steps; per-step median of each round, then min and median over
   rounds, the two KIP losses at the initial images, and the two products with the pool that any such
   step makes, alone, from a cold and from a hot cache (:func:`_pool_products_ms`). Then conv (and one
   FC) kernels without gradients against neural-tangents' on the same shapes (``PEER_CONV_CASES``),
   one thread, with the largest relative difference of a corner of entries.

Nothing is asserted; ``bench.md`` and ``bench.json`` are written.
"""
from __future__ import annotations

import itertools
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine import adam
from engine.config import DistillConfig
from engine.device import StepThreads
from engine.distill import make_optimizer, run
from engine.events import Done
from engine.kernels import make_kernel
from engine.kernels.fc_fused import constant_columns
from engine.tensors import to_nchw
from engine.bench.report import machine_line

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
                     "kip_ridge": cfg.kip_ridge if cfg.mode == "kip" else None,
                     "steps": done.metrics["steps"], "ms_per_step": 1e3 / sps if sps else float("nan")})
        print(f"{case}: {rows[-1]['ms_per_step']:.2f} ms per step", flush=True)
    return rows


def _our_kip_steps(data: dict[str, np.ndarray], steps: int) -> tuple[float, list[float]]:
    """Our KIP step on ``data`` (engine.bench.peer.kip_step's layout) with the threads the caller set
    (:func:`_pinned`; this set one thread itself until 2026-12-04, so the earlier two-thread KIP cells
    ran on one): (loss at the initial images, seconds of each step after a warm-up step)."""
    from engine.kip import kip_loss_and_grad
    kernel = make_kernel("ntk-fc")
    xb, yb = torch.from_numpy(data["xb"]), torch.from_numpy(data["yb"])
    xs, ys = torch.from_numpy(data["xs"]).clone().requires_grad_(True), torch.from_numpy(data["ys"])
    opt = make_optimizer("adam", [xs], float(data["lr"]), xs.device)   # as the run builds and steps it
    seconds, first = [], None
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        # the run's KIP step (engine.objectives.KIPObjective.step): loss and gradient by hand, no graph
        by_hand = kip_loss_and_grad(kernel, xs, ys, xb, yb, float(data["lam"]), ridge="trace")
        assert by_hand is not None, "the bench's 2,000-image tile is within the FC kernels' tile budget"
        loss, xs.grad = by_hand
        adam.step(opt)
        if i == 0:
            first = loss.item()
        else:
            seconds.append(time.perf_counter() - t0)
    return first, seconds


PEER_CONV_CASES = [  # (arch, depth, ntk, n_a, n_b, H, W, C): conv kernels are priced per pixel pair
    ("conv", 3, False, 40, 40, 28, 28, 1), ("conv", 3, True, 40, 40, 28, 28, 1),
    ("conv", 3, True, 20, 20, 32, 32, 3), ("fc", 3, True, 2000, 2000, 28, 28, 1)]


def _peer(peer_python: str, args: list[str], threads: int) -> dict[str, Any]:
    """Run engine/bench/peer/kip_step.py under ``peer_python`` on ``threads`` cores (XLA's threads to match)."""
    import subprocess
    multi = "true" if threads > 1 else "false"
    env = {**os.environ, "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={multi} intra_op_parallelism_threads={threads}",
           "OMP_NUM_THREADS": str(threads), "JAX_PLATFORMS": "cpu"}
    cores = set(range(threads))
    proc = subprocess.run([peer_python, str(Path(__file__).parent / "peer" / "kip_step.py"), *args], env=env,
                          capture_output=True, text=True, preexec_fn=lambda: os.sched_setaffinity(0, cores))
    if proc.returncode != 0:
        raise RuntimeError(f"the reference failed: {proc.stderr[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _pinned(threads: int, fn):
    """``fn()`` on the first ``threads`` cores with ``threads`` torch threads."""
    before, torch_before = os.sched_getaffinity(0), torch.get_num_threads()
    os.sched_setaffinity(0, set(range(threads)))
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        os.sched_setaffinity(0, before)
        torch.set_num_threads(torch_before)


def _pool_products_ms(data: dict[str, np.ndarray], reps: int = 15) -> tuple[float, float]:
    """(cold, hot) ms of the two products every KIP or DGKIP step makes with the fixed real pool X
    (b, d): the forward x̃ Xᵀ and the gradient's G X, G (m, b), both from X's kept transpose as the
    step computes them (engine.kernels.fc_fused.mm_nt / mm_nn). Cold:
    after writing a 64 MiB buffer (X is in no cache, as when a step's other work or another process
    has evicted it); hot: the same two products repeated at once. Median of ``reps``; the threads
    the caller set."""
    from engine.kernels.fc_fused import mm_nn, mm_nt
    X, xs = torch.from_numpy(data["xb"]), torch.from_numpy(data["xs"])
    G = torch.randn(xs.shape[0], X.shape[0], generator=torch.Generator().manual_seed(0))
    flush = torch.empty(2**24)

    def products() -> float:
        t0 = time.perf_counter()
        mm_nt(xs, X, fixed=True)
        mm_nn(G, X)
        return time.perf_counter() - t0

    for _ in range(3):
        products()                                   # keeps Xᵀ (the step keeps it on its second sighting)
    cold, hot = [], []
    for _ in range(reps):
        flush.fill_(1.0)
        cold.append(products())
        hot.append(products())
    return statistics.median(cold) * 1e3, statistics.median(hot) * 1e3


def dgkip_skip() -> int:
    """Steps of a DGKIP cell's run before its timed PEER_STEPS: the warm-up and the first thread trial."""
    return StepThreads.first_trial_end()


def _dgkip_step(ipc: int, dataset) -> tuple[float, int]:
    """Our DGKIP step (cross-entropy, exact teacher on ``dataset``'s PEER_POOL training images, as the
    run estimate's probe sets it up, engine.plan.time): median ms of the run's own step clock over
    PEER_STEPS steps after its warm-up and first thread trial (:func:`dgkip_skip` steps,
    engine.device.StepThreads), and the threads it then ran."""
    from engine.plan.time import probe_config
    from engine.events import Step
    skip = dgkip_skip()
    cfg = probe_config(DistillConfig(ipc=ipc, kernel="ntk-fc", snapshot_every=0), PEER_POOL, skip + PEER_STEPS).validate()
    elapsed, threads = [], None
    for event in run(cfg, dataset=dataset):
        if isinstance(event, Step):
            elapsed.append(event.elapsed)
        elif isinstance(event, Done):
            threads = event.result.metrics["step_threads"]
    per_step = [b - a for a, b in zip(elapsed[skip - 1:], elapsed[skip:])]
    return statistics.median(per_step) * 1e3, threads


POOLS = {"random": "KIP and the reference on a standard normal pool from standard normal initial images; DGKIP on "
                   "uniform random uint8 images (engine.plan.time.random_dataset)",
         "mnist": "MNIST training images, a tenth of the pool from each class (seed 0), standardised per channel "
                  "as a run does; KIP and the reference start from the first images of each class"}


def mnist_pool(datasets: str | Path | None):
    """PEER_POOL MNIST training images, PEER_POOL/10 of each class (seed 0), and 10 more of each as
    test images, as an engine.data Dataset; None without ``datasets``/mnist-train.npz."""
    from engine.data.build import build_dataset
    from engine.data.formats import RawData
    path = Path(datasets) / "mnist-train.npz" if datasets else None
    if path is None or not path.is_file():
        return None
    with np.load(path) as f:
        x, y = f["x"], f["y"]
    rng, per = np.random.default_rng(0), PEER_POOL // 10
    picks = [rng.permutation(np.flatnonzero(y == c))[:per + 10] for c in range(10)]
    train, test = np.concatenate([p[:per] for p in picks]), np.concatenate([p[per:] for p in picks])
    x = x.reshape(len(x), 28, 28, 1)
    raw = RawData("npz", "mnist (speed bench pool)", [str(c) for c in range(10)], x[train], y[train], x[test],
                  y[test], modes={"L": len(train) + len(test)})
    return build_dataset(raw, source=str(path))


def _cell_data(pool, rng: np.random.Generator, ipc: int) -> dict[str, np.ndarray]:
    """One cell's KIP data (engine.bench.peer.kip_step's layout): ``pool`` None draws standard normal
    pool and initial images from ``rng``; a Dataset gives its images standardised per channel (fitted
    on them, engine.data.preprocess) with their labels, and its first ``ipc`` images of each class as
    the initial images."""
    from engine.data.preprocess import Preprocessor
    m = 10 * ipc
    common = {"ys": np.eye(10, dtype=np.float32)[np.arange(m) % 10], "lam": np.float64(PEER_LAM),
              "lr": np.float64(PEER_LR)}
    if pool is None:
        return {"xb": rng.standard_normal((PEER_POOL, 784)).astype(np.float32),
                "yb": np.eye(10, dtype=np.float32)[rng.integers(0, 10, PEER_POOL)],
                "xs": rng.standard_normal((m, 784)).astype(np.float32), **common}
    z = Preprocessor.fit(pool.x_train).transform(pool.x_train).reshape(PEER_POOL, 784).astype(np.float32)
    first = np.concatenate([np.flatnonzero(pool.y_train == c)[:ipc] for c in range(10)])
    order = first.reshape(10, ipc).T.reshape(-1)          # class c at rows c, c + 10, … as ys
    return {"xb": z, "yb": np.eye(10, dtype=np.float32)[pool.y_train], "xs": z[order].copy(), **common}


def _step_row(peer_python: str, path: Path, data: dict[str, np.ndarray], dataset, pool_name: str, threads: int,
              ipc: int) -> dict[str, Any]:
    """One cell of the step table: PEER_ROUNDS interleaved rounds of the reference's KIP step (``data``
    saved at ``path``), ours and our DGKIP run on ``dataset``, at ``threads`` threads; printed as it ends."""
    ours, dgkip, dgkip_threads, peer, loss_ours, loss_peer = [], [], [], [], None, None
    for _ in range(PEER_ROUNDS):          # interleaved: all three see the same load
        answer = _peer(peer_python, ["step", str(path), str(PEER_STEPS)], threads)
        peer.append(statistics.median(answer["seconds"]) * 1e3)
        loss_peer = answer["loss0"]
        loss_ours, secs = _pinned(threads, lambda: _our_kip_steps(data, PEER_STEPS))
        ours.append(statistics.median(secs) * 1e3)
        ms, used = _pinned(threads, lambda: _dgkip_step(ipc, dataset))
        dgkip.append(ms)
        dgkip_threads.append(used)
    cold, hot = _pinned(threads, lambda: _pool_products_ms(data))
    row = {"pool": pool_name, "threads": threads, "ipc": ipc, "pool_images": PEER_POOL, "kip_ms": ours, "dgkip_ms": dgkip,
           "dgkip_threads": dgkip_threads,
           "peer_ms": peer, "jax": answer["jax"], "loss_ours": loss_ours, "loss_peer": loss_peer,
           "pool_products_cold_ms": cold, "pool_products_hot_ms": hot,
           "constant_columns": int(constant_columns(torch.from_numpy(data["xb"])).sum())}
    for key in ("kip", "dgkip"):
        row[f"{key}_ratio_min"] = min(row[f"{key}_ms"]) / min(peer)
        row[f"{key}_ratio_median"] = statistics.median(row[f"{key}_ms"]) / statistics.median(peer)
    print(f"{pool_name} pool, {threads} thread(s), IPC {ipc}: KIP {min(ours):.2f}/{statistics.median(ours):.2f} ms, DGKIP "
          f"{min(dgkip):.2f}/{statistics.median(dgkip):.2f} ms, reference KIP {min(peer):.2f}/"
          f"{statistics.median(peer):.2f} ms (min/median); KIP/reference {row['kip_ratio_min']:.2f}/"
          f"{row['kip_ratio_median']:.2f}, DGKIP/reference {row['dgkip_ratio_min']:.2f}/"
          f"{row['dgkip_ratio_median']:.2f}; losses {loss_ours:.6g} / {loss_peer:.6g}; the two pool "
          f"products {cold:.2f} ms cold, {hot:.2f} ms hot", flush=True)
    return row


def peer_rows(peer_python: str, datasets: str | Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Ours against the reference (module doc, 3.): KIP and DGKIP steps on each of :data:`POOLS`
    there is data for, conv and FC kernels."""
    from engine.plan.time import random_dataset
    import tempfile
    steps, kernels = [], []
    rng = np.random.default_rng(0)
    mnist = mnist_pool(datasets)
    pools = {"random": None, **({"mnist": mnist} if mnist is not None else {})}
    with tempfile.TemporaryDirectory() as tmp:
        for pool_name, pool in pools.items():
            dataset = pool if pool is not None else random_dataset((1, 28, 28), 10, PEER_POOL // 10, 10)
            for threads, ipc in itertools.product((1, 2), (1, 10)):
                data = _cell_data(pool, rng, ipc)
                path = Path(tmp) / f"ipc{ipc}.npz"
                np.savez(path, **data)
                steps.append(_step_row(peer_python, path, data, dataset, pool_name, threads, ipc))
        for arch, depth, ntk, na, nb, h, w, c in PEER_CONV_CASES:
            a = rng.standard_normal((na, h, w, c)).astype(np.float32)
            b = rng.standard_normal((nb, h, w, c)).astype(np.float32)
            path = Path(tmp) / "shapes.npz"
            np.savez(path, a=a, b=b, arch=arch, depth=depth, filter_size=3, ntk=int(ntk))
            name = ("ntk-" if ntk else "nngp-") + arch
            kernel = make_kernel(name, depth=depth)
            ta, tb = to_nchw(a), to_nchw(b)
            ours, peer = [], []
            for _ in range(PEER_ROUNDS):
                answer = _peer(peer_python, ["kernel", str(path), "1"], 1)
                peer.append(answer["seconds"][0] * 1e3)

                def evaluate():
                    with torch.no_grad():
                        kernel(ta, tb)
                        return _seconds(lambda: kernel(ta, tb)) * 1e3
                ours.append(_pinned(1, evaluate))
            with torch.no_grad():
                corner = kernel(ta.double(), tb.double())[:4, :4].numpy()
            agree = float(np.max(np.abs(corner - np.asarray(answer["corner"])) / np.abs(corner)))
            kernels.append({"kernel": name, "params": kernel.params(), "shape": [na, nb, h, w, c], "ours_ms": ours,
                            "peer_ms": peer, "ratio_median": statistics.median(ours) / statistics.median(peer),
                            "max_rel_diff_float32_peer": agree})
            print(f"{name} {kernel.params()} {na} × {nb} of {h}×{w}×{c}, 1 thread: ours {statistics.median(ours):.1f} ms, "
                  f"reference {statistics.median(peer):.1f} ms, ratio {kernels[-1]['ratio_median']:.2f}; entries agree to "
                  f"{agree:.1e} (reference float32)", flush=True)
    return {"steps": steps, "kernels": kernels}


def bench_speed(out: str | Path, datasets: str | Path | None = None, command: str = "") -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    report = {"command": command, "machine": machine_line(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "load_average_before": load_before, "shape": KERNEL_SHAPE,
              "kernels": kernel_rows(), "steps": step_rows()}
    peer_python = os.environ.get("DGKIP_PEER_PYTHON")
    report["peer"] = peer_rows(peer_python, datasets) if peer_python else None
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
    if report["peer"]:
        jax_version = report["peer"]["steps"][0]["jax"]
        ran = list(dict.fromkeys(r["pool"] for r in report["peer"]["steps"]))
        lines += ["", f"Steps against the reference KIP (neural-tangents + JAX {jax_version}, jit, Adam), "
                  f"{PEER_POOL:,}-image pools (*pool*: " + "; ".join(f"{k}: {POOLS[k]}" for k in ran)
                  + "; DGKIP starts from the run's own real initial images), "
                  f"d = 784, ntk-fc depth 1 (W_std √2, b_std 0.1), {PEER_ROUNDS} "
                  f"interleaved rounds of {PEER_STEPS} steps, each process pinned to as many cores as threads "
                  "(ms per step, min / median over rounds). DGKIP: cross-entropy, exact teacher on the pool, "
                  f"a run's own clock over {PEER_STEPS} steps after its {dgkip_skip()} steps of warm-up and thread "
                  "trial (CPU threads auto, engine.device.StepThreads: one thread against the cell's, the faster "
                  "kept); *DGKIP threads*: what each round's run kept. *Pool products*: the two products every step "
                  "of either side makes with the 2,000 × 784 pool (forward and gradient; its constant columns folded out, "
                  "engine.kernels.fc_fused), alone, after a 64 MiB "
                  "write (cold) and repeated at once (hot); median of 15.", "",
                  "| pool | threads | IPC | our KIP ms | our DGKIP ms | DGKIP threads | reference KIP ms | KIP / ref | DGKIP / ref | pool products cold / hot ms | loss ours | loss ref |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['pool']} ({r['constant_columns']} constant columns) | {r['threads']} | {r['ipc']} | {min(r['kip_ms']):.2f} / {statistics.median(r['kip_ms']):.2f} | "
                  f"{min(r['dgkip_ms']):.2f} / {statistics.median(r['dgkip_ms']):.2f} | "
                  f"{', '.join(str(t) for t in r['dgkip_threads'])} | "
                  f"{min(r['peer_ms']):.2f} / {statistics.median(r['peer_ms']):.2f} | {r['kip_ratio_min']:.2f} / "
                  f"{r['kip_ratio_median']:.2f} | {r['dgkip_ratio_min']:.2f} / {r['dgkip_ratio_median']:.2f} | "
                  f"{r['pool_products_cold_ms']:.2f} / {r['pool_products_hot_ms']:.2f} | "
                  f"{r['loss_ours']:.6g} | {r['loss_peer']:.6g} |" for r in report["peer"]["steps"]]
        lines += ["", "Kernels against neural-tangents (jit, float32, one thread, no gradients; median of "
                  f"{PEER_ROUNDS}; filter 3 × 3, SAME padding):", "",
                  "| kernel | parameters | n_a × n_b of H×W×C | ours ms | reference ms | ours / ref | max rel. diff |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['kernel']} | {json.dumps(r['params'])} | {r['shape'][0]} × {r['shape'][1]} of "
                  f"{r['shape'][2]}×{r['shape'][3]}×{r['shape'][4]} | {statistics.median(r['ours_ms']):.1f} | "
                  f"{statistics.median(r['peer_ms']):.1f} | {r['ratio_median']:.2f} | {r['max_rel_diff_float32_peer']:.1e} |"
                  for r in report["peer"]["kernels"]]
    else:
        lines += ["", "Against the reference: not run (set DGKIP_PEER_PYTHON to a Python with neural-tangents and jax)."]
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    return report
