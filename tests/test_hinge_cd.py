"""The working-set hinge solver (engine.hinge_cd via engine.solver) against independent references:
scipy's L-BFGS-B on the sub-problem, FISTA run to a tight gap, libsvm on a problem whose optimum
has no bias, and the KKT conditions; the certified gap checked as an upper bound on the distance
to a long-run optimum; degenerate (duplicate) points; one and several columns; cancellation."""
import json

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from sklearn.svm import SVC

import engine.hinge_cd as hcd
from engine.kernels import make_kernel
from engine.losses import make_loss
from engine.solver import solve, solve_dense

LAM = 1e-2
HINGE = make_loss("hinge")


def _problem(seed, n=160, d=6, classes=2, kernel="rbf"):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    X = rng.standard_normal((n, d)) + 1.2 * np.eye(classes, d)[labels]
    x = torch.from_numpy(X)
    K = make_kernel(kernel, **({"bandwidth": 2.0} if kernel == "rbf" else {}))(x).double()
    return K, torch.from_numpy(labels)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 16 coordinates, so that a problem of a few hundred points takes many outer iterations."""
    monkeypatch.setattr(hcd, "WORKING_SET", 16)


def _kkt(sol, Y, lam, eps):
    beta = (sol.alpha * Y).numpy()
    yz = (Y * sol.z).numpy()
    assert beta.min() >= 0.0 and beta.max() <= 1.0                 # feasible, exactly
    assert np.all(yz[beta == 0.0] >= 1 - eps)
    assert np.all(yz[beta == 1.0] <= 1 + eps)
    free = (beta > 0) & (beta < 1)
    assert np.all(np.abs(yz[free] - 1) <= eps)


@pytest.mark.parametrize("solver", ["newton", "sweeps"])
def test_sub_problem_matches_lbfgsb(solver):
    rng = np.random.default_rng(1)
    for q in (1, 5, 40, 41):
        M = rng.standard_normal((q, q + 3))
        H = M @ M.T / q
        g = rng.standard_normal(q) * 2
        if q == 41:                                          # singular: a duplicated coordinate
            H = np.pad(H[:40, :40], ((0, 1), (0, 1)))
            H[40, :40] = H[:40, 40] = H[0, :40]
            H[40, 40] = H[0, 0]
        b = rng.uniform(0, 1, q)
        x = (hcd.box_qp(H, g, b, tol=1e-13, max_newton=200) if solver == "newton"
             else hcd.box_cd(H, g, b, tol=1e-13, max_sweeps=5000))
        f = lambda v: float(g @ (v - b) + 0.5 * (v - b) @ H @ (v - b))
        ref = minimize(f, b, jac=lambda v: g + H @ (v - b), method="L-BFGS-B", bounds=[(0, 1)] * q,
                       options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10000})
        assert x.min() >= 0 and x.max() <= 1
        assert f(x) <= ref.fun + 1e-10
        assert f(x) == pytest.approx(ref.fun, abs=1e-8)


@pytest.mark.parametrize("seed,classes", [(0, 2), (1, 2), (2, 3), (3, 4)])
def test_working_set_matches_fista_and_kkt(small_blocks, seed, classes):
    K, labels = _problem(seed, classes=classes)
    Y = HINGE.targets(labels, classes)                       # two classes: one ±1 column
    cd = solve_dense(K, Y, HINGE, LAM, tol=1e-10)
    fista = solve(lambda V: K @ V, Y, HINGE, LAM, tol=1e-8, max_iter=400)
    assert cd.solver.startswith("coordinate descent") and fista.solver.startswith("fista")
    assert cd.rel_gap <= 1e-10
    assert abs(cd.primal - fista.primal) <= cd.gap + fista.gap + 1e-14
    assert cd.iterations > K.shape[0]                       # many blocks of 16 were needed
    _kkt(cd, Y, LAM, 1e-4)


def test_matches_libsvm_where_the_optimum_has_no_bias(small_blocks):
    """Points in ± pairs, (x, y) and (−x, −y), with the linear kernel: the bias-free optimum then
    satisfies libsvm's constraint Σ yα = 0, so libsvm (which fits a bias) solves the same problem."""
    rng = np.random.default_rng(4)
    half = rng.standard_normal((120, 5)) + np.array([1.0, 0.5, 0, 0, 0])
    yh = np.where(half[:, 0] + 0.7 * rng.standard_normal(120) > 1.0, 1, -1)
    X = np.vstack([half, -half]) / np.sqrt(5)
    y = np.concatenate([yh, -yh])
    K = X @ X.T
    n = len(y)
    sol = solve_dense(torch.from_numpy(K), torch.from_numpy(y[:, None].astype(float)), HINGE, LAM, tol=1e-11)
    svc = SVC(kernel="precomputed", C=1 / (LAM * n), tol=1e-10).fit(K, y)
    assert abs(svc.intercept_[0]) < 1e-4
    w = X[svc.support_].T @ svc.dual_coef_[0]               # libsvm's weights (its bias dropped)
    p_lib = float(np.mean(np.maximum(0, 1 - y * (X @ w))) + LAM / 2 * w @ w)
    assert sol.primal <= p_lib + 1e-9                       # ours is optimal to its certified gap ...
    assert sol.primal == pytest.approx(p_lib, rel=1e-6)     # ... and libsvm reaches the same optimum
    w_ours = X.T @ sol.alpha.numpy()[:, 0] / (LAM * n)
    assert np.linalg.norm(w_ours - w) <= 1e-3 * np.linalg.norm(w)


def test_gap_bounds_the_distance_to_a_long_run_optimum(small_blocks):
    K, labels = _problem(5, n=200, classes=3)
    Y = HINGE.targets(labels, 3)
    n = K.shape[0]
    best = solve_dense(K, Y, HINGE, LAM, tol=1e-13)
    for it in (0, 1, 2):                                     # 0, 1, 2 sweeps' worth of updates
        rough = solve_dense(K, Y, HINGE, LAM, tol=1e-13, max_iter=it)
        assert rough.gap > best.gap
        d = (rough.alpha - best.alpha) / (LAM * n)
        dist2 = float((d * (K @ d)).sum())
        assert dist2 <= 2 * rough.gap / LAM + 1e-12
        assert rough.primal - best.primal <= rough.gap + best.gap + 1e-14      # primal suboptimality
        assert best.dual - rough.dual <= rough.gap + best.gap + 1e-14          # dual suboptimality


def test_duplicate_points_and_contradicting_labels(small_blocks):
    K, labels = _problem(6, n=80)
    idx = torch.cat([torch.arange(80), torch.arange(80), torch.arange(10)])   # every point twice, ten thrice
    K3 = K[idx][:, idx]
    lab = labels[idx].clone()
    lab[-10:] = 1 - lab[-10:]                               # the third copies carry the other label
    Y = HINGE.targets(lab, 2)
    cd = solve_dense(K3, Y, HINGE, LAM, tol=1e-10)
    fista = solve(lambda V: K3 @ V, Y, HINGE, LAM, tol=1e-8, max_iter=400)
    assert cd.rel_gap <= 1e-10
    assert abs(cd.primal - fista.primal) <= cd.gap + fista.gap + 1e-14
    _kkt(cd, Y, LAM, 1e-4)


def test_two_mirrored_columns_are_the_one_column_problem_twice(small_blocks):
    K, labels = _problem(7, n=150)
    one = solve_dense(K, HINGE.targets(labels, 2), HINGE, LAM, tol=1e-11)
    two = solve_dense(K, HINGE.expand_columns(HINGE.targets(labels, 2), 2), HINGE, LAM, tol=1e-11)
    assert two.primal == pytest.approx(2 * one.primal, rel=1e-9)
    assert torch.allclose(two.z[:, 1], one.z[:, 0], atol=1e-6) and torch.allclose(two.z[:, 0], -one.z[:, 0], atol=1e-6)


def test_progress_events_and_cancel(small_blocks):
    K, labels = _problem(8, n=200, classes=3)
    Y = HINGE.targets(labels, 3)
    seen = []
    sol = solve_dense(K, Y, HINGE, LAM, tol=1e-10, progress=seen.append)
    assert seen[0].gap > seen[-1].gap and seen[-1].rel_gap <= 1e-10 and sol.gap == seen[-1].gap

    class Stop(Exception):
        pass

    calls = []

    def checkpoint():
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    with pytest.raises(Stop):
        solve_dense(K, Y, HINGE, LAM, tol=1e-10, checkpoint=checkpoint)
    assert len(calls) == 3


def test_svm_bench_skips_without_mnist(tmp_path):
    from engine.bench.svm import bench_svm
    report = bench_svm(tmp_path, tmp_path / "absent", command="pytest")
    assert "skipped" in report and "Skipped" in (tmp_path / "bench.md").read_text(encoding="utf-8")


def test_svm_bench_tables_on_a_small_problem(tmp_path, monkeypatch):
    """The bench's whole path on a synthetic stand-in for MNIST (same keys as mnist_problem)."""
    import engine.bench.svm as bs

    def fake(datasets_dir, classes=bs.PAIR, cap=None):
        k = 2 if classes else 4
        K, labels = _problem(9, n=240, classes=k)
        Kt, _ = _problem(10, n=240, classes=k)
        return {"K": K, "K_test": Kt[:60], "y": labels, "y_test": labels[:60], "classes": [str(c) for c in range(k)],
                "kernel": "rbf", "kernel_params": {"bandwidth": 2.0}, "preprocess": "standardize", "lam": bs.LAM}

    monkeypatch.setattr(bs, "mnist_problem", fake)
    monkeypatch.setattr(bs, "REPEATS", 1)
    report = bs.bench_svm(tmp_path, tmp_path, command="pytest")
    row = report["rows"][0]
    assert row["ours_rel_gap"] <= 1e-6 and row["libsvm_median_s"] > 0 and 0 <= row["decision_agreement"] <= 1
    assert report["mirrored"]["gap_ratio"] > 0 and report["ten_classes"]["classes"] == 4
    md = (tmp_path / "bench.md").read_text(encoding="utf-8")
    assert md == bs.to_markdown(json.loads((tmp_path / "bench.json").read_text(encoding="utf-8")))
    assert "| MNIST 3 vs 5, one column |" in md


def test_certificate_of_a_sparse_solution_is_the_full_products(small_blocks):
    """Separated classes, few support vectors: the certificate (from the rows with α ≠ 0) is that of the
    full product K α, recomputed here independently."""
    from engine.solver import certificate
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 2, 300)
    X = rng.standard_normal((300, 4)) + 4.0 * np.eye(2, 4)[labels]
    K = make_kernel("rbf", bandwidth=3.0)(torch.from_numpy(X)).double()
    Y = HINGE.targets(torch.from_numpy(labels), 2)
    sol = solve_dense(K, Y, HINGE, 1e-3, tol=1e-9)
    assert 0 < int((sol.alpha != 0).sum()) < 150              # the sparse product path was taken
    primal, dual, gap, z = certificate(HINGE, Y, sol.alpha, K @ sol.alpha, 1e-3)
    assert torch.allclose(z, sol.z, rtol=0, atol=1e-12)
    assert sol.gap == pytest.approx(gap, rel=1e-6, abs=1e-15) and sol.primal == pytest.approx(primal, rel=1e-12)
