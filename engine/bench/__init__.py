"""``dgkip-engine bench``: every suite prints measured numbers and ratios against a reference measured
in the same run, and writes ``bench.md`` and ``bench.json`` to ``--out`` (nothing here is asserted).

| suite | module | measures |
|---|---|---|
| ``quick``, ``mnist``, ``cifar``, ``cifar-zca``, ``full`` | :mod:`engine.bench.results` | kernel and transfer accuracy of DGKIP, KIP, random and k-means sets; solver, kernel and step ratios |
| ``accuracy`` | :mod:`engine.bench.accuracy` | DGKIP variants against KIP at equal kernel and IPC |
| ``speed`` | :mod:`engine.bench.speed` | step and kernel times against a plain matmul and neural-tangents |
| ``svm`` | :mod:`engine.bench.svm` | the hinge teacher against scikit-learn's libsvm |
| ``estimate`` | :mod:`engine.bench.estimate` | the time estimate against the measured run |
| ``nystrom`` | :mod:`engine.bench.nystrom` | Nyström teachers on whole MNIST and Fashion-MNIST |
| ``cluster`` | :mod:`engine.bench.cluster` | one process against several under torchrun |

:mod:`engine.bench.kip_peer` and :mod:`engine.bench.binary` are run as modules (``python -m``);
``engine/bench/peer/`` holds the reference KIP scripts run by a separate Python with neural-tangents.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

RESULT_SUITES = ("quick", "mnist", "cifar", "cifar-zca", "full")
#: suite name → (module, function, whether it takes the datasets folder)
_RUNNERS = {"accuracy": ("accuracy", "bench_accuracy", True), "speed": ("speed", "bench_speed", True),
            "svm": ("svm", "bench_svm", True), "estimate": ("estimate", "bench_estimate", True),
            "nystrom": ("nystrom", "bench_nystrom", True), "cluster": ("cluster", "bench_cluster", True)}
SUITES = RESULT_SUITES + tuple(_RUNNERS)


def run_suite(suite: str, out: str | Path, datasets: str | Path, command: str = "") -> dict[str, Any]:
    """Run one suite by name (imported on demand: the speed suite never loads the results suite's
    dependencies) and return its report; ``report["seconds"]`` is its wall time."""
    if suite in RESULT_SUITES:
        from engine.bench.results import bench
        return bench(suite, out, datasets, command=command)
    if suite not in _RUNNERS:
        raise ValueError(f"unknown bench suite {suite!r}; choose from {', '.join(SUITES)}")
    module, function, takes_datasets = _RUNNERS[suite]
    runner = getattr(importlib.import_module(f"engine.bench.{module}"), function)
    return runner(out, datasets, command=command) if takes_datasets else runner(out, command=command)
