"""``dgkip-engine bench --suite accuracy``: DGKIP against KIP at equal kernel and IPC (issue 17, item 4).

For every cell (dataset, kernel depth, IPC) it distils with KIP (fixed ridge λ·m, the squared-loss
kernel model) and with DGKIP under a list of variants — the bench baseline (squared and
cross-entropy), k-means initialisation, a cosine step-size schedule, learned labels, their
combination, and the combined objective ``(1 − w)·gap + w·KIP loss`` for a sweep of ``kip_weight``
w (w = 0 is pure DGKIP, w = 1 optimises KIP's loss alone inside a DGKIP run, still certified). Each
row reports the kernel test accuracy of the same-loss kernel model trained on the distilled set
(``distilled_test_accuracy`` of :func:`engine.distill.run`: a stratified test sample of at most
``engine.certify.MAX_EVAL_TEST`` images), the certified gap and radius at the teacher (the same
certificate whatever was optimised; KIP's sets are certified too), and the first evaluated step at
which the accuracy reached the cell's threshold (85 % at IPC 1, 90 % at IPC 10). The (accuracy,
radius) pairs of the kip_weight sweep are the accuracy-versus-certificate front. Nothing is
asserted; ``bench.md`` and ``bench.json`` are written after every cell.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.bench.report import machine, pct
from engine.config import DistillConfig
from engine.data import load_dataset
from engine.distill import run
from engine.events import Done, Evaluation
from engine.timing import peak_rss_mb

STEPS = 500
EVAL_EVERY = 20
LAM = 1e-2                 # the mnist/quick suites' λ and lr (engine.bench)
LR = 0.03
FRONT = (0.1, 0.3, 0.5, 0.9, 1.0)
# CIFAR-10 (d = 3,072) costs about 4× an MNIST step: the front's ends and middle, and label learning;
# kip_weight 1 is KIP's own step (identical to KIP mode on every MNIST cell), so KIP mode stands for it
CIFAR_VARIANTS = ("KIP (fixed ridge)", "DGKIP squared", "squared + learned labels", "squared, kip_weight 0.5",
                  "squared, kip_weight 0.9", "squared + k-means, kip_weight 0.9")
CIFAR_STEPS = 300


@dataclass(frozen=True)
class AccCell:
    label: str
    data: str
    cap: int                # real images per class (10 classes: a pool of 10·cap)
    depth: int
    ipc: int
    threshold: float        # accuracy whose first step is reported
    variants: tuple[str, ...] | None = None     # labels of the variants run on this cell (None = all)
    steps: int | None = None                    # this cell's steps (None = the suite's)


def cells(datasets_dir: str | Path) -> list[AccCell]:
    d = Path(datasets_dir)
    mnist, cifar = str(d / "mnist-train.npz"), str(d / "cifar10-train-1.npz")
    out = [AccCell(f"MNIST depth {depth} IPC {ipc}", mnist, 200, depth, ipc, 0.85 if ipc == 1 else 0.90)
           for depth in (1, 3) for ipc in (1, 10)]
    out.append(AccCell("CIFAR-10 depth 1 IPC 10", cifar, 200, 1, 10, 0.38, CIFAR_VARIANTS, CIFAR_STEPS))
    return out


def variants(front: tuple[float, ...] = FRONT) -> list[tuple[str, dict[str, Any]]]:
    """(label, DistillConfig overrides) of every run of a cell, KIP first."""
    sq, ce = dict(loss="squared"), dict(loss="cross-entropy")
    rows = [("KIP (fixed ridge)", dict(mode="kip", loss="squared", kip_ridge="fixed")),
            ("DGKIP squared", sq), ("DGKIP cross-entropy", ce),
            ("squared + k-means init", dict(sq, init="kmeans")),
            ("squared + cosine lr", dict(sq, lr_schedule="cosine")),
            ("squared + cosine lr, 50 warm-up", dict(sq, lr_schedule="cosine", warmup_steps=50)),
            ("squared + learned labels", dict(sq, learn_labels=True)),
            ("squared + k-means + cosine", dict(sq, init="kmeans", lr_schedule="cosine")),
            ("cross-entropy + k-means + cosine", dict(ce, init="kmeans", lr_schedule="cosine")),
            ("cross-entropy + learned labels", dict(ce, learn_labels=True))]
    rows += [(f"squared, kip_weight {w:g}", dict(sq, kip_weight=w)) for w in front]
    rows += [(f"squared + k-means + cosine, kip_weight {w:g}", dict(sq, init="kmeans", lr_schedule="cosine", kip_weight=w))
             for w in (0.5,)]
    rows += [("KIP + k-means init", dict(mode="kip", loss="squared", init="kmeans", kip_ridge="fixed")),
             ("squared + k-means, kip_weight 0.9", dict(sq, init="kmeans", kip_weight=0.9)),
             ("squared, lr 0.1", dict(sq, lr=0.1)),
             ("squared + learned labels, kip_weight 0.9", dict(sq, learn_labels=True, kip_weight=0.9)),
             ("cross-entropy + learned labels + k-means", dict(ce, learn_labels=True, init="kmeans"))]
    return rows


def run_one(cell: AccCell, label: str, overrides: dict[str, Any], dataset, steps: int, eval_every: int) -> dict[str, Any]:
    settings = dict(data=cell.data, max_per_class=cell.cap, ipc=cell.ipc, kernel="ntk-fc",
                    kernel_params={"depth": cell.depth}, lam=LAM, lr=LR, steps=steps, eval_every=eval_every,
                    snapshot_every=0)
    cfg = DistillConfig(**{**settings, **overrides})
    t = time.perf_counter()
    curve, done = [], None
    for e in run(cfg, dataset=dataset):
        if isinstance(e, Evaluation):
            curve.append((e.step, e.distilled_accuracy, e.radius))
        elif isinstance(e, Done):
            done = e
    m = done.metrics
    reach = next((s for s, a, _ in curve if a >= cell.threshold), None)
    best = max(curve, key=lambda c: c[1])
    return {"cell": cell.label, "variant": label, "overrides": overrides, "accuracy": m["distilled_test_accuracy"],
            "radius": m["radius"], "gap": m["gap"], "teacher": m["teacher_test_accuracy"],
            "random": m["random_subset_test_accuracy"], "n_test": m["n_test"], "n_train": m["n_train"],
            "steps_to_threshold": reach, "threshold": cell.threshold, "best_accuracy": best[1], "best_step": best[0],
            "curve": curve, "seconds": time.perf_counter() - t, "steps": steps,
            "kernel_params": done.result.config.kernel_params}      # resolved


def to_markdown(report: dict[str, Any]) -> str:
    mach = report["machine"]
    s = report["settings"]
    lines = ["# DGKIP against KIP at equal kernel and IPC (accuracy suite)", "",
             f"Command: `{report['command']}`  ", f"Date: {report['date']}  ",
             f"Machine: {mach['cpu']}, {mach['cores']} cores (shared), torch {mach['torch']} ({mach['threads']} threads)  ",
             f"Wall time: {report['seconds']:.0f} s; peak memory {report['peak_rss_mb']:.0f} MiB", "",
             f"Settings: 10 classes, {s['cap']} real images per class (pool of {10 * s['cap']:,}), kernel ntk-fc "
             f"(resolved parameters per row in bench.json), λ = {s['lam']:g} (mean form), Adam at lr {s['lr']:g}, "
             f"{s['steps']} steps, accuracy evaluated every {s['eval_every']} steps, standardised pixels, initial "
             "images a class-balanced real sample unless `k-means`; KIP with its fixed ridge λ·m. Accuracy: kernel "
             "model of the run's loss trained on the distilled set, on a stratified test sample (`n test`). "
             "Radius: the certified bound √(2·gap/λ) at the teacher. `reach`: first evaluated step at the "
             "threshold accuracy (— = never).", ""]
    for cell in dict.fromkeys(r["cell"] for r in report["results"]):
        rows = [r for r in report["results"] if r["cell"] == cell]
        r0 = rows[0]
        lines += [f"## {cell}, {r0.get('steps', s['steps'])} steps (teacher {pct(r0['teacher'])} %, random subset {pct(r0['random'])} %, "
                  f"n = {r0['n_train']:,}, n test = {r0['n_test']:,}, kernel {r0['kernel_params']})", "",
                  f"| variant | accuracy % | best % (step) | radius | gap | reach {pct(r0['threshold'])} % | s |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            reach = "—" if r["steps_to_threshold"] is None else str(r["steps_to_threshold"])
            lines.append(f"| {r['variant']} | **{pct(r['accuracy'])}** | {pct(r['best_accuracy'])} ({r['best_step']}) | "
                         f"{r['radius']:.3g} | {r['gap']:.3g} | {reach} | {r['seconds']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def bench_accuracy(out: str | Path, datasets: str | Path, command: str = "", only: list[str] | None = None,
                   steps: int = STEPS, eval_every: int = EVAL_EVERY,
                   variant_list: list[tuple[str, dict[str, Any]]] | None = None,
                   cell_list: list[AccCell] | None = None) -> dict[str, Any]:
    """Run the cells (``only``: labels to keep; ``cell_list``: instead of :func:`cells`), writing
    ``bench.json`` / ``bench.md`` after each run."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = [c for c in (cell_list or cells(datasets)) if only is None or c.label in only]
    todo = variant_list if variant_list is not None else variants()
    report = {"suite": "accuracy", "command": command, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
              "machine": machine(), "settings": {"cap": chosen[0].cap if chosen else 200, "lam": LAM, "lr": LR, "steps": steps,
                                                 "eval_every": eval_every, "kernel": "ntk-fc",
                                                 "cells": [c.__dict__ for c in chosen]},
              "results": [], "complete": False}

    def write() -> None:
        report.update(seconds=time.perf_counter() - t0, peak_rss_mb=peak_rss_mb())
        (out / "bench.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
        (out / "bench.md").write_text(to_markdown(report), encoding="utf-8")

    loaded: dict[str, Any] = {}
    for cell in chosen:
        if cell.data not in loaded:
            loaded[cell.data] = load_dataset(cell.data, holdout_fraction=DistillConfig.holdout_fraction,
                                             seed=DistillConfig.seed)
        for label, overrides in todo:
            if cell.variants is not None and label not in cell.variants:
                continue
            r = run_one(cell, label, overrides, loaded[cell.data], cell.steps or steps, eval_every)
            report["results"].append(r)
            reach = r["steps_to_threshold"]
            print(f"  {cell.label:24s} {label:44s} acc {100 * r['accuracy']:.1f} % radius {r['radius']:.3g} "
                  f"reach {reach if reach is not None else '—'} ({r['seconds']:.0f} s)", flush=True)
            write()
    report["complete"] = True
    write()
    return report


def merge_reports(paths: list[str | Path], out: str | Path, command: str) -> dict[str, Any]:
    """One report from several partial ones (the suite's cells run in separate processes): results in
    the order of :func:`cells` and :func:`variants`; wall time = the longest part."""
    parts = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    known = cells(".")
    order_c = {c.label: i for i, c in enumerate(known)}
    threshold = {c.label: c.threshold for c in known}
    for r in (r for p in parts for r in p["results"]):      # the threshold as the cells now state it
        r["threshold"] = threshold.get(r["cell"], r["threshold"])
        r["steps_to_threshold"] = next((s for s, a, _ in r["curve"] if a >= r["threshold"]), None)
    order_v = {label: i for i, (label, _) in enumerate(variants())}
    results = sorted((r for p in parts for r in p["results"]),
                     key=lambda r: (order_c.get(r["cell"], 99), order_v.get(r["variant"], 99)))
    report = dict(parts[0], command=command, results=results, complete=all(p["complete"] for p in parts))
    report["settings"] = dict(parts[0]["settings"], cells=[c for p in parts for c in p["settings"]["cells"]])
    report["seconds"] = max(p["seconds"] for p in parts)
    report["peak_rss_mb"] = max(p["peak_rss_mb"] for p in parts)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    (out / "bench.md").write_text(to_markdown(report), encoding="utf-8")
    return report
