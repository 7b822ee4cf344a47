"""``dgkip-engine bench --suite cluster``: the sharded Nyström teacher in 1 process and under torchrun.

One configuration (all of MNIST's training images when ``--datasets`` holds ``mnist-train.npz``, else
the built-in sample), run by ``dgkip-engine distill`` in one process (torch's default threads) and by
``torchrun --nproc_per_node=N`` (gloo, one thread per process, torchrun's default) for each N of
``PROCESSES``. Recorded per run: the teacher's wall time (rank 0's ``teacher_seconds``) and its ratio
to one process, every rank's peak RSS (the ranks print it; one process: ``os.wait4``), and the largest
relative difference to one process of the teacher's primal, of its certified gap (relative to the
primal: the gap itself sits near rounding level), and of the run's metrics. Nothing is
asserted; ``bench.md`` and ``bench.json`` are written.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from engine import __version__
from engine.bench.report import machine_line

PROCESSES = (2,)
MNIST_CONFIG = {"teacher": "nystrom", "centres": 2000, "loss": "cross-entropy", "kernel": "ntk-fc",
                "kernel_params": {"depth": 1}, "lam": 1e-5, "ipc": 10, "steps": 50, "eval_every": 0, "device": "cpu"}
SAMPLE_CONFIG = {**MNIST_CONFIG, "data": "sample", "centres": 200}
RUN_METRICS = ("teacher_test_accuracy", "distilled_test_accuracy", "gap", "radius")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_cluster(out: str | Path, datasets: str | Path | None = None, command: str = "") -> dict[str, Any]:
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    mnist = Path(datasets) / "mnist-train.npz" if datasets else None
    cfg = {**MNIST_CONFIG, "data": str(mnist)} if mnist is not None and mnist.exists() else SAMPLE_CONFIG
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    base = [sys.executable, "-m", "engine", "distill", "--config", str(out / "config.json"), "--overwrite"]
    rows = []

    t_start = time.perf_counter()
    res, _, wall, rss = _timed_child(base + ["--out", str(out / "export-1")], out, env)
    one = res["metrics"]
    rows.append({"processes": 1, "threads_each": torch.get_num_threads(), "teacher_s": one["teacher_seconds"],
                 "wall_s": wall, "peak_rss_mb": [rss], "primal_diff": 0.0, "gap_diff": 0.0, "metrics_diff": 0.0})
    print(f"1 process: teacher {one['teacher_seconds']:.1f} s, run {wall:.1f} s, peak {rss:.0f} MiB", flush=True)
    for n in PROCESSES:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "--master_addr=127.0.0.1",
               f"--master_port={_port()}", *base[1:], "--out", str(out / f"export-{n}")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun with {n} processes failed ({proc.returncode}): {proc.stderr[-2000:]}")
        m = json.loads(proc.stdout)["metrics"]
        peaks = {int(r): float(v.replace(",", "")) for r, v in re.findall(r"rank (\d+): .*?peak memory ([\d,.]+) MiB",
                                                                           proc.stderr)}
        primal = abs(one["teacher_primal"])
        diff = max(abs(m[k] - one[k]) / max(abs(one[k]), 1e-300) for k in RUN_METRICS)
        rows.append({"processes": n, "threads_each": 1, "teacher_s": m["teacher_seconds"], "wall_s": wall,
                     "peak_rss_mb": [peaks.get(r, float("nan")) for r in range(n)],
                     "primal_diff": abs(m["teacher_primal"] - one["teacher_primal"]) / primal,
                     "gap_diff": abs(m["teacher_gap"] - one["teacher_gap"]) / primal, "metrics_diff": diff})
        print(f"{n} processes: teacher {m['teacher_seconds']:.1f} s ({one['teacher_seconds'] / m['teacher_seconds']:.2f}× "
              f"faster), run {wall:.1f} s, peak per rank {rows[-1]['peak_rss_mb']} MiB, teacher primal difference "
              f"{rows[-1]['primal_diff']:.1e}, metrics {diff:.1e}", flush=True)
    report = {"command": command, "machine": machine_line(),
              "load_average": os.getloadavg(), "torch": torch.__version__, "version": __version__,
              "config": cfg, "run_metrics": RUN_METRICS, "rows": rows, "seconds": time.perf_counter() - t_start}
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# The sharded Nyström teacher: one process against torchrun (gloo)", "",
             f"`{command}` — {report['machine']}, torch {report['torch']}, load average (1/5/15 min) "
             f"{', '.join(f'{v:.1f}' for v in report['load_average'])}.", "",
             "Config (resolved kernel parameters included): `" + json.dumps(cfg) + "`.", "",
             "Differences against one process: the teacher's primal (relative), its certified gap (relative to the "
             f"primal) and the largest relative difference of the run's {', '.join(RUN_METRICS)}.", "",
             "| processes | threads each | teacher s | teacher speed-up | run wall s | peak RSS per rank MiB | "
             "primal diff | gap diff | metrics diff |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['processes']} | {r['threads_each']} | {r['teacher_s']:.1f} | {rows[0]['teacher_s'] / r['teacher_s']:.2f}× | "
              f"{r['wall_s']:.1f} | {' / '.join(f'{p:,.0f}' for p in r['peak_rss_mb'])} | {r['primal_diff']:.1e} | "
              f"{r['gap_diff']:.1e} | {r['metrics_diff']:.1e} |"
              for r in rows]
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    return report


def _timed_child(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[dict[str, Any], str, float, float]:
    """Run ``cmd`` as a child and reap it with ``os.wait4`` so that its peak RSS is its own."""
    t0 = time.perf_counter()
    with open(cwd / "child.out", "w") as so, open(cwd / "child.err", "w") as se:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=so, stderr=se)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(cwd / 'child.err').read_text()[-2000:]}")
    return json.loads((cwd / "child.out").read_text()), (cwd / "child.err").read_text(), seconds, usage.ru_maxrss / 1024
