"""``dgkip-engine bench --suite estimate``: the run estimate's time hint against the measured time.

Runs a few ordinary configurations through :func:`engine.distill.run` and prints, for each, the
estimate's ``seconds_hint`` (:func:`engine.plan.estimate_run`, made just before the run, so the
machine rates it measures see the same load) next to the wall time of the run, and their ratio. The
app's promise is a ratio within 1.5× either way on the machine it runs on. Nothing is asserted;
``bench.md`` and ``bench.json`` are written.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from engine.config import DistillConfig
from engine.data import load_dataset
from engine.plan import estimate_run
from engine.events import Done
from engine.distill import run
from engine.bench.report import machine_line

CASES: dict[str, dict[str, Any]] = {
    "sample, ntk-fc, cross-entropy, 1,500 steps": dict(data="sample", steps=1500),
    "sample, ntk-fc, hinge, IPC 5, 300 steps": dict(data="sample", loss="hinge", ipc=5, steps=300),
    "sample, rf-fc, squared, IPC 10, 500 steps": dict(data="sample", kernel="rf-fc", loss="squared", ipc=10, steps=500),
    "sample, KIP, IPC 10, 500 steps": dict(data="sample", mode="kip", loss="squared", ipc=10, steps=500),
}
# with the datasets folder (../shared/datasets): larger images and a teacher that is not negligible
DATASET_CASES: dict[str, dict[str, Any]] = {
    "MNIST 10 × 300, ntk-fc, cross-entropy, IPC 10, 200 steps":
        dict(data="mnist-train.npz", test_data="mnist-test.npz", max_per_class=300, ipc=10, steps=200),
    "MNIST 3 vs 5 × 1,000, ntk-fc, hinge, IPC 10, 100 steps":
        dict(data="mnist-train.npz", test_data="mnist-test.npz", classes=["3", "5"], max_per_class=1000,
             loss="hinge", ipc=10, steps=100),
}


def bench_estimate(out: str | Path, datasets: str | Path | None = None, command: str = "") -> dict[str, Any]:
    rows = []
    t0 = time.perf_counter()
    cases = dict(CASES)
    if datasets is not None and (Path(datasets) / "mnist-train.npz").exists():
        for name, changes in DATASET_CASES.items():
            cases[name] = {**changes, "data": str(Path(datasets) / changes["data"]),
                           "test_data": str(Path(datasets) / changes["test_data"])}
    for name, changes in cases.items():
        cfg = DistillConfig(device="cpu", **changes).validate()
        report = load_dataset(cfg.data, test_path=cfg.test_data, seed=cfg.seed).report
        hint = estimate_run(cfg, report).seconds_hint
        start = time.perf_counter()
        done = [e for e in run(cfg) if isinstance(e, Done)][-1]
        seconds = time.perf_counter() - start
        rows.append({"case": name, "estimate_s": hint, "measured_s": seconds, "ratio": seconds / hint if hint else None,
                     "steps": done.metrics["steps"], "threads": torch.get_num_threads()})
        print(f"{name}: estimate {hint} s, measured {seconds:.1f} s, measured/estimate {rows[-1]['ratio']:.2f}", flush=True)
    report = {"command": command, "machine": machine_line(), "torch": torch.__version__,
              "rows": rows, "seconds": time.perf_counter() - t0}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Time estimate against the measured run", "", f"`{command}` — {report['machine']}, torch {report['torch']}, "
             f"{torch.get_num_threads()} threads.", "", "| case | estimate s | measured s | measured / estimate |",
             "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['estimate_s']} | {r['measured_s']:.1f} | {r['ratio']:.2f} |" for r in rows]
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    return report
