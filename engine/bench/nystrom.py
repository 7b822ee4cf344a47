"""``dgkip-engine bench --suite nystrom``: whole datasets with the Nyström teacher (engine.nystrom).

Three tables, every row a real run of :func:`engine.distill.run` with the settings it records:

1. **teacher vs M**: all training images of MNIST and Fashion-MNIST, one FC kernel fixed before
   measuring (ntk-fc, depth 1, neural-tangents defaults), cross-entropy, λ = ``LAM``: the teacher's
   test accuracy, certified relative gap, solve seconds and the run's peak RSS for each number of
   centres M. Each cell runs in a child process so that its peak RSS is its own (``os.wait4``).
2. **DGKIP on whole datasets**: the Nyström teacher with ``DISTIL_CENTRES`` centres, DGKIP
   cross-entropy at each (λ, IPC) of ``DISTIL_GRID`` (kernel accuracy of the model trained on the
   distilled set, the teacher's and a random subset's), and ConvNet-3 transfer at IPC 10.
3. **step time vs n**: the same M, n from 1,000 to 60,000: a step costs O(m·M), independent of n.

Nothing is asserted; ``bench.md`` and ``bench.json`` are written after every row.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine import __version__
from engine.config import DistillConfig
from engine.data import load_dataset
from engine.distill import prepare_dataset, run, stratified_cap
from engine.events import Done
from engine.transfer import run_transfer, TransferSummary
from engine.bench.report import machine_line

KERNEL, KERNEL_PARAMS, LOSS = "ntk-fc", {"depth": 1}, "cross-entropy"
LAM = 1e-5
CENTRES = (1000, 2000, 5000, 10000)
DISTIL_CENTRES = 2000
DISTIL_GRID = {"mnist": ((1e-5, 1), (1e-5, 10), (1e-3, 1), (1e-3, 10), (1e-3, 50)), "fashion-mnist": ((1e-3, 10),)}
STEPS, LR = 300, 0.01
BUDGET_GB = 16.0
TRANSFER_TEST = 2000


def _config(data: str, **kw: Any) -> DistillConfig:
    base = dict(data=data, kernel=KERNEL, kernel_params=dict(KERNEL_PARAMS), loss=LOSS, lam=LAM, teacher="nystrom",
                eval_every=0, snapshot_every=0, memory_budget_gb=BUDGET_GB, steps=1, ipc=1)
    base.update(kw)
    return DistillConfig(**base).validate()


def _metrics(cfg: DistillConfig) -> dict[str, Any]:
    done = [e for e in run(cfg) if isinstance(e, Done)][-1]
    return done.metrics


def teacher_cell(cfg: DistillConfig) -> dict[str, Any]:
    """Run ``cfg`` in a child process; its metrics plus the child's own peak RSS (MiB) and seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "engine.bench.nystrom", cfg.to_json()], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[2])
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"bench cell failed (status {status}): {cfg.to_json()}")
    metrics = json.loads(out.strip().splitlines()[-1])
    metrics["peak_rss_mb"] = usage.ru_maxrss / 1024
    metrics["wall_s"] = time.perf_counter() - t0
    return metrics


def _transfer_convnet(result, data: str, seeds: int = 2) -> dict[str, float]:
    ds = prepare_dataset(result.config, load_dataset(data, seed=result.config.seed))
    idx = stratified_cap(ds.y_test, TRANSFER_TEST, result.config.seed)
    x_test = result.preprocess.transform(ds.x_test[idx])
    for ev in run_transfer(result.images, result.labels, None, x_test, ds.y_test[idx].astype(np.int64),
                                networks=("convnet",), seeds=seeds):
        if isinstance(ev, TransferSummary):
            return {"mean": ev.mean, "std": ev.std, "seconds": ev.seconds, "seeds": seeds}
    return {}


def _write(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    lines = [f"# Nyström teacher bench", "", f"`{report['command']}` — {report['machine']}, torch {report['torch']}, "
             f"{report['seconds']:.0f} s so far.", "",
             f"Kernel {KERNEL} {json.dumps(KERNEL_PARAMS)} (w_std √2, b_std 0.1), loss {LOSS}, λ = {LAM:g} in the "
             f"teacher table (per row below), "
             f"class-balanced uniform centres, teacher tolerance 1e-6 (relative gap), memory budget {BUDGET_GB:g} GiB, "
             f"all training images, 10,000 test images.", "",
             "## Teacher vs number of centres M", "",
             "| dataset | M | teacher test acc. % | certified rel. gap | teacher s | run s | peak RSS MiB | solver |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["teacher"]:
        lines.append(f"| {r['dataset']} | {r['centres']:,} | {100 * r['teacher_test_accuracy']:.2f} | "
                     f"{r['teacher_rel_gap']:.1e} | {r['teacher_seconds']:.0f} | {r['wall_s']:.0f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['teacher_solver']} |")
    lines += ["", f"## DGKIP ({LOSS}) on whole datasets, Nyström teacher with {DISTIL_CENTRES:,} centres (λ, Adam "
                  f"steps and learning rate per row)", "",
              "| dataset | λ | steps | lr | IPC | distilled kernel acc. % | teacher % | random subset % | radius | "
              "ConvNet-3 transfer % | run s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["distil"]:
        t = r.get("transfer") or {}
        tr = f"{100 * t['mean']:.1f} ± {100 * t['std']:.1f} ({t['seeds']} seeds)" if t else "—"
        lines.append(f"| {r['dataset']} | {r['lam']:g} | {r['steps']} | {r['lr']:g} | {r['ipc']} | "
                     f"{100 * r['distilled_test_accuracy']:.2f} | "
                     f"{100 * r['teacher_test_accuracy']:.2f} | {100 * r['random_subset_test_accuracy']:.2f} | "
                     f"{r['radius']:.3g} | {tr} | {r['seconds']:.0f} |")
    lines += ["", f"## Step time vs n (Nyström teacher, M = {report.get('step_centres', '')}, IPC 10, λ = {LAM:g}, 40 steps)", "",
              "| n | steps/s | ms per step |", "|---|---|---|"]
    for r in report["steps"]:
        lines.append(f"| {r['n_train']:,} | {r['steps_per_second']:.1f} | {1000 / r['steps_per_second']:.1f} |")
    (out / "bench.md").write_text("\n".join(lines) + "\n")


def bench_nystrom(out: str | Path, datasets: str | Path, command: str = "", parts: tuple[str, ...] = ("teacher", "distil", "steps"),
                  centres: tuple[int, ...] = CENTRES) -> dict[str, Any]:
    out, root = Path(out), Path(datasets)
    t0 = time.perf_counter()
    report: dict[str, Any] = {"command": command, "machine": machine_line(),
                              "torch": torch.__version__, "version": __version__, "lam": LAM, "kernel": KERNEL,
                              "kernel_params": KERNEL_PARAMS, "teacher": [], "distil": [], "steps": []}
    sets = [(name, root / f"{name}-train.npz") for name in ("mnist", "fashion-mnist")]
    sets = [(name, path) for name, path in sets if path.exists()]

    def save() -> None:
        report["seconds"] = time.perf_counter() - t0
        _write(out, report)

    if "teacher" in parts:
        for name, path in sets:
            for m in centres:
                r = teacher_cell(_config(str(path), centres=m))
                report["teacher"].append({"dataset": name, **r})
                print(f"teacher {name} M={m}: {100 * r['teacher_test_accuracy']:.2f} %, rel gap "
                      f"{r['teacher_rel_gap']:.1e}, {r['teacher_seconds']:.0f} s, {r['peak_rss_mb']:.0f} MiB", flush=True)
                save()
    if "distil" in parts:
        for name, path in sets:
            for lam, ipc in DISTIL_GRID[name]:
                cfg = _config(str(path), centres=DISTIL_CENTRES, ipc=ipc, steps=STEPS, lr=LR, lam=lam)
                done = [e for e in run(cfg) if isinstance(e, Done)][-1]
                row = {"dataset": name, "lam": lam, "lr": LR, "ipc": ipc, **done.metrics}
                if ipc == 10:
                    row["transfer"] = _transfer_convnet(done.result, str(path))
                report["distil"].append(row)
                print(f"distil {name} λ {lam:g} IPC {ipc}: {100 * row['distilled_test_accuracy']:.2f} % "
                      f"(teacher {100 * row['teacher_test_accuracy']:.2f} %)", flush=True)
                save()
    if "steps" in parts and sets:
        name, path = sets[0]
        report["step_centres"] = 1000
        for cap in (100, 1000, None):
            cfg = _config(str(path), centres=1000, ipc=10, steps=40, max_per_class=cap)
            m = _metrics(cfg)
            report["steps"].append({"n_train": m["n_train"], "steps_per_second": m["steps_per_second"]})
            print(f"steps n={m['n_train']}: {m['steps_per_second']:.1f} steps/s", flush=True)
            save()
    save()
    return report


if __name__ == "__main__":          # one teacher cell, in its own process (see teacher_cell)
    metrics = _metrics(DistillConfig.from_json(sys.argv[1]))
    print(json.dumps(metrics, default=str))
