"""One rank of the sharded-teacher test (tests/test_cluster.py): ``torchrun --nproc_per_node=N
teacher_worker.py OUT``. Every rank fits the Nyström teacher of :func:`problem` on its shard; rank 0
saves c, the primal, the gap and the centres of each case to OUT (torch.save)."""
from __future__ import annotations

import sys

import torch

from engine.cluster import Cluster
from engine.kernels import make_kernel
from engine.losses import make_loss
from engine.teacher import fit_nystrom_teacher

# (loss, centre selection, teacher tolerance): smooth losses to 1e-12, hinge to the run's default 1e-6
LAM = 1e-3
CASES = [("cross-entropy", "uniform", 1e-12), ("squared", "kmeans++", 1e-12), ("hinge", "uniform", 1e-6)]


def problem(n: int = 600, d: int = 20, classes: int = 3, seed: int = 0):
    """(x (n, d) float64, labels (n,)): Gaussian blobs, the same on every rank."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(classes, (n,), generator=g)
    means = torch.randn(classes, d, generator=g, dtype=torch.float64) * 1.5
    return means[labels] + torch.randn(n, d, generator=g, dtype=torch.float64), labels


def fit(cluster: Cluster, loss_name: str, selection: str, tol: float) -> dict:
    x, labels = problem()
    loss, kernel = make_loss(loss_name), make_kernel("ntk-fc")
    Y = loss.targets(labels, 3)
    rows = cluster.shard(len(labels))
    gen = fit_nystrom_teacher(kernel, loss, LAM, x[rows], Y[rows], labels, centres=80, selection=selection,
                              seed=5, tol=tol, max_iter=100, cluster=cluster)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        t = stop.value
    return {"c": t.coef, "centres": t.x, "primal": t.solution.primal, "gap": t.solution.gap,
            "iterations": t.solution.iterations, "n": t.n, "n_support": t.n_support, "w_norm2": t.w_norm2}


def main(out: str) -> None:
    cluster = Cluster.from_env()
    try:
        results = {case: fit(cluster, *case) for case in CASES}
        if cluster.leader:
            torch.save(results, out)
    finally:
        cluster.close()


if __name__ == "__main__":
    main(sys.argv[1])
