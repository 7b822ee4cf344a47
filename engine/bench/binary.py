"""One column against the mirrored pair on MNIST 3 vs 5 (issue 17 item 6): teacher time, gap, radius.

    python -m engine.bench.binary hinge logistic squared-hinge

2,000 training images (1,000 per class, seed 0; MNIST from ../shared/datasets), the 1,902 test
images of the pair, standardised pixels, ntk-fc depth 1, λ = 1e-3, teacher to a relative gap of 1e-9,
one thread. The "distilled" set is 5 real images per class plus N(0, 0.5²) noise (a set with a real gap).
The pair's targets are :meth:`engine.losses.Loss.expand_columns` of the one column, i.e. [[1, −1], [−1, 1]].
"""
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from engine.losses import make_loss
from engine.kernels import make_kernel
from engine.teacher import fit_teacher
from engine.certify import TestSet, certify

DATA = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    d = np.load(DATA / "mnist-train.npz"); t = np.load(DATA / "mnist-test.npz")
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.choice(np.nonzero(d["y"] == c)[0], 1000, replace=False) for c in (3, 5)])
    x = d["x"][idx].reshape(len(idx), -1).astype(np.float64) / 255; y = (d["y"][idx] == 5).astype(np.int64)
    ti = np.nonzero((t["y"] == 3) | (t["y"] == 5))[0]
    xt = t["x"][ti].reshape(len(ti), -1).astype(np.float64) / 255; yt = (t["y"][ti] == 5).astype(np.int64)
    mu, sd = x.mean(0), x.std(0) + 1e-8
    x, xt = torch.from_numpy((x - mu) / sd), torch.from_numpy((xt - mu) / sd)
    y, yt = torch.from_numpy(y), torch.from_numpy(yt)
    k, lam = make_kernel("ntk-fc"), 1e-3
    xs_idx = torch.cat([torch.nonzero(y == c)[:5, 0] for c in (0, 1)])
    g = torch.Generator().manual_seed(0)
    xs = x[xs_idx] + 0.5 * torch.randn(x[xs_idx].shape, generator=g, dtype=torch.float64)
    for name in names:
        loss = make_loss(name)
        res = {}
        for cols in (1, 2):
            Y = loss.targets(y, 2) if cols == 1 else loss.expand_columns(loss.targets(y, 2), 2)
            t0 = time.perf_counter()
            gen = fit_teacher(k, loss, lam, x, Y, tol=1e-9, max_iter=500)
            try:
                while True: next(gen)
            except StopIteration as s: teacher = s.value
            tt = time.perf_counter() - t0
            test = TestSet.build(teacher, xt, yt)
            Ys = Y[xs_idx]
            t0 = time.perf_counter(); c = certify(teacher, xs, Ys, test); tc = time.perf_counter() - t0
            res[cols] = (tt, tc, c, teacher)
            print(f"{name} cols {cols}: teacher {tt:.2f} s ({teacher.solution.solver}, rel gap {teacher.solution.rel_gap:.1e}), "
                  f"certify {tc:.3f} s, gap {c.gap:.6g}, radius {c.radius:.6g}, acc {c.distilled_accuracy:.4f}, "
                  f"teacher acc {test.teacher_accuracy:.4f}, certified {c.certified_consistency:.4f}", flush=True)
        a, b = res[1][2], res[2][2]
        print(f"{name}: gap ratio {b.gap / a.gap:.9f}, radius ratio / sqrt2 {b.radius / a.radius / math.sqrt(2):.9f}, "
              f"teacher time ratio {res[2][0] / res[1][0]:.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
