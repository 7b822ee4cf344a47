"""The Nyström teacher against independent references.

References: the closed form of the restricted ridge problem (squared loss), the exact solvers of
engine.solver on the Nyström kernel K_XZ K_ZZ⁺ K_ZX (every loss; a different code path from
engine.nystrom's Newton–PCG in feature space), and the bound itself, measured by training the
exact-kernel model on the distilled set.
"""
import math

import numpy as np
import pytest
import torch

from engine.config import DistillConfig
from engine.control import Cancelled
from engine.data import sample_dataset
from engine.distill import prepare_dataset, run, to_nchw
from engine.events import Done, Progress, TeacherDone
from engine.generators import drain
from engine.kernels import make_kernel
from engine.losses import loss_names, make_loss
from engine.nystrom import select_centres
from engine.solver import solve_dense
from engine.teacher import fit_nystrom_teacher


@pytest.fixture(scope="module")
def digits():
    """300 standardised sample digits (float64, flat), labels, and 100 test digits."""
    ds = sample_dataset(seed=0)
    x = torch.from_numpy(ds.x_train.reshape(len(ds.x_train), -1)).double()
    x = (x - x.mean()) / x.std()
    y = torch.from_numpy(ds.y_train).long()
    return x[:300], y[:300]


def _nystrom_reference(kernel, loss, lam, x, Y, z, tol=1e-12):
    """(c, primal) of the restricted problem, solved on the Nyström kernel by engine.solver."""
    kxz, kzz = kernel(x, z), kernel(z)
    kzz_pinv = torch.linalg.pinv(kzz, hermitian=True, rtol=1e-13)
    knys = kxz @ kzz_pinv @ kxz.T
    knys = 0.5 * (knys + knys.T)
    sol = solve_dense(knys, Y, loss, lam, tol=tol, max_iter=300)
    n = x.shape[0]
    c = kzz_pinv @ kxz.T @ sol.alpha / (lam * n)           # w(α) projected on span φ(Z)
    return c, sol.primal, sol.gap


def test_uniform_centres_are_class_balanced_distinct_and_seeded(digits):
    x, y = digits
    idx = select_centres(x, y, 50, "uniform", seed=3)
    assert len(idx) == 50 and len(torch.unique(idx)) == 50
    counts = torch.bincount(y[idx], minlength=10).double()
    share = torch.bincount(y, minlength=10).double() * 50 / len(y)
    assert torch.all((counts - share).abs() <= 1.0)
    assert torch.equal(idx, select_centres(x, y, 50, "uniform", seed=3))
    assert not torch.equal(idx, select_centres(x, y, 50, "uniform", seed=4))


def test_kmeanspp_spreads_centres_over_separated_clusters():
    # three tight, far-apart clusters: D² sampling puts one of the first three centres in each
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(40, 5, generator=g, dtype=torch.float64) * 0.01 + 10 * i for i in range(3)])
    y = torch.arange(120) // 40
    idx = select_centres(x, y, 3, "kmeans++", seed=1, kernel=make_kernel("rbf", bandwidth=1.0))
    assert sorted((idx // 40).tolist()) == [0, 1, 2]


def test_squared_loss_matches_the_closed_form_of_the_restricted_problem(digits):
    x, y = digits
    kernel, loss, lam = make_kernel("ntk-fc", depth=2), make_loss("squared"), 1e-3
    Y = loss.targets(y, 10)
    teacher = drain(fit_nystrom_teacher(kernel, loss, lam, x, Y, y, centres=60, seed=1, tol=1e-10))
    z = x[select_centres(x, y, 60, "uniform", seed=1)]
    kxz, kzz = kernel(x, z), kernel(z)
    n = x.shape[0]
    c = torch.linalg.lstsq(kxz.T @ kxz / n + lam * kzz, kxz.T @ Y / n, rcond=None).solution
    assert teacher.kind == "nystrom" and teacher.info["centres"] == 60
    assert torch.equal(teacher.x, z)
    f_ref, f = kxz @ c, kxz @ teacher.coef
    assert torch.allclose(f, f_ref, rtol=1e-6, atol=1e-7)
    assert math.isclose(teacher.w_norm2, float((c * (kzz @ c)).sum()), rel_tol=1e-6)


@pytest.mark.parametrize("loss_name", loss_names())
def test_teacher_gap_certifies_the_restricted_optimum(digits, loss_name):
    """P(c) − P* ≤ reported gap, P* from engine.solver on the Nyström kernel; and the primal agrees."""
    x, y = digits
    kernel, loss, lam = make_kernel("nngp-fc", depth=1), make_loss(loss_name), 1e-2
    Y = loss.targets(y, 10)
    tol = 1e-4 if loss_name == "hinge" else 1e-8
    teacher = drain(fit_nystrom_teacher(kernel, loss, lam, x, Y, y, centres=80, seed=0, tol=tol, max_iter=300))
    sol = teacher.solution
    z = teacher.x
    _, p_star, ref_gap = _nystrom_reference(kernel, loss, lam, x, Y, z)
    assert sol.rel_gap <= tol
    assert sol.primal - p_star <= sol.gap + ref_gap + 1e-9 * abs(p_star), (loss_name, sol.primal, p_star, sol.gap)
    assert sol.primal >= p_star - ref_gap - 1e-9 * abs(p_star)
    # the teacher's scores on the training points are those of its coefficients
    assert torch.allclose(sol.z, kernel(x, z) @ teacher.coef, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("loss_name", ["cross-entropy", "squared-hinge"])
def test_all_points_as_centres_is_the_exact_teacher(digits, loss_name):
    x, y = digits
    x, y = x[:120], y[:120]
    kernel, loss, lam = make_kernel("ntk-fc"), make_loss(loss_name), 1e-2
    Y = loss.targets(y, 10)
    teacher = drain(fit_nystrom_teacher(kernel, loss, lam, x, Y, y, centres=120, tol=1e-10))
    exact = solve_dense(kernel(x), Y, loss, lam, tol=1e-12, max_iter=200)
    assert math.isclose(teacher.solution.primal, exact.primal, rel_tol=1e-7)
    assert torch.allclose(teacher.solution.z, exact.z, atol=1e-5)


def test_recomputed_rows_give_the_same_teacher_and_explicit_kernels_keep_weights(digits):
    x, y = digits
    loss, lam = make_loss("logistic"), 1e-2
    Y = loss.targets(y, 10)
    k = make_kernel("ntk-fc")
    cached = drain(fit_nystrom_teacher(k, loss, lam, x, Y, y, centres=50, cache=True))
    again = drain(fit_nystrom_teacher(k, loss, lam, x, Y, y, centres=50, cache=False))
    assert torch.allclose(cached.coef, again.coef, rtol=1e-9, atol=1e-12)
    rf = make_kernel("rf-fc", width=64, n_models=1)
    t = drain(fit_nystrom_teacher(rf, loss, lam, x, Y, y, centres=50))
    assert t.weights is not None and t.x is None
    phi = rf.features(x)
    assert torch.allclose(phi @ t.weights, t.solution.z, rtol=1e-8, atol=1e-9)
    assert math.isclose(float((t.weights ** 2).sum()), t.w_norm2, rel_tol=1e-8)


def test_cancel_is_honoured_between_tiles(digits):
    x, y = digits
    kernel = make_kernel("ntk-fc", tile_bytes=40_000)     # many row tiles
    loss = make_loss("squared")
    calls = {"n": 0}

    def checkpoint():
        calls["n"] += 1
        if calls["n"] > 3:
            raise Cancelled()

    gen = fit_nystrom_teacher(kernel, loss, 1e-2, x, loss.targets(y, 10), y, centres=40, checkpoint=checkpoint)
    events = []
    with pytest.raises(Cancelled):
        for e in gen:
            events.append(e)
    assert any(isinstance(e, Progress) and e.stage == "kernel" and e.done < e.total for e in events)


def _student(kernel, loss, lam, xs, Ys):
    Kss = kernel(xs)
    s = solve_dense(Kss, Ys, loss, lam, tol=1e-13, max_iter=200)
    return s.alpha / (lam * xs.shape[0]), Kss, s.gap


@pytest.mark.parametrize("loss_name", ["squared", "cross-entropy"])
def test_distilled_against_a_nystrom_teacher_obeys_both_radii(loss_name):
    """Train the exact-kernel model on the Nyström-distilled set: it lies within ``radius`` of the
    Nyström teacher w* = Σ c_j φ(z_j) (re-solved here from the same centres) and within
    ``radius_to_exact_teacher`` of the exact full-data teacher (solved here on the dense kernel)."""
    cfg = DistillConfig(data="sample", loss=loss_name, kernel="ntk-fc", ipc=2, steps=12, max_per_class=25,
                        lam=1e-2, eval_every=0, snapshot_every=0, lr=0.05, teacher="nystrom", centres=40,
                        certify_exact=True).validate()
    events = list(run(cfg))
    done = events[-1]
    assert isinstance(done, Done)
    td = next(e for e in events if isinstance(e, TeacherDone))
    assert td.kind == "nystrom" and td.centres == 40
    res = done.result
    assert res.metrics["teacher_kind"] == "nystrom" and res.metrics["centres"] == 40
    ds = prepare_dataset(cfg, sample_dataset(seed=cfg.seed, holdout_fraction=cfg.holdout_fraction))
    x_d = to_nchw(res.preprocess.transform(ds.x_train)).double()
    y_d = torch.from_numpy(ds.y_train).long()
    x_s = to_nchw(res.images).double()
    kernel, loss, lam = make_kernel(cfg.kernel, **cfg.kernel_params), make_loss(cfg.loss), cfg.lam
    Y_d = loss.targets(y_d, len(ds.classes))
    z = x_d[select_centres(x_d, y_d, 40, "uniform", cfg.seed)]
    c, _, ref_gap = _nystrom_reference(kernel, loss, lam, x_d, Y_d, z)
    a, Kss, s_gap = _student(kernel, loss, lam, x_s, torch.from_numpy(res.targets).double())
    dist2 = float((a * (Kss @ a)).sum() - 2 * (a * (kernel(x_s, z) @ c)).sum() + (c * (kernel(z) @ c)).sum())
    slack = math.sqrt(2 * s_gap / lam) + math.sqrt(2 * ref_gap / lam) + math.sqrt(2 * res.metrics["teacher_gap"] / lam)
    assert math.sqrt(max(dist2, 0.0)) <= res.metrics["radius"] + slack
    # the exact teacher, solved on the dense kernel of all n points
    n = x_d.shape[0]
    K = kernel(x_d)
    t = solve_dense(K, Y_d, loss, lam, tol=1e-13, max_iter=200)
    b = t.alpha / (lam * n)
    d_exact2 = float((a * (Kss @ a)).sum() - 2 * (a * (kernel(x_s, x_d) @ b)).sum() + (b * (K @ b)).sum())
    bound = res.metrics["radius_to_exact_teacher"]
    assert bound is not None and res.metrics["exact_teacher_gap"] > 0
    assert math.sqrt(max(d_exact2, 0.0)) <= bound + math.sqrt(2 * s_gap / lam) + math.sqrt(2 * t.gap / lam)
    # informative: the exact teacher's distance to the Nyström teacher is bounded, not vacuous
    d_teachers2 = float((c * (kernel(z) @ c)).sum() - 2 * (c * (kernel(z, x_d) @ b)).sum() + (b * (K @ b)).sum())
    exact_radius = bound - res.metrics["radius"]
    assert math.sqrt(max(d_teachers2, 0.0)) <= exact_radius + 1e-6 < 100 * math.sqrt(max(d_teachers2, 0.0)) + 1e-6


def test_auto_teacher_is_exact_when_it_fits_and_kip_runs_on_a_nystrom_teacher():
    base = DistillConfig(data="sample", ipc=1, steps=3, max_per_class=30, eval_every=0, snapshot_every=0)
    done = list(run(base))[-1]
    assert done.metrics["teacher_kind"] == "exact" and done.metrics["centres"] is None
    assert done.metrics["radius_to_exact_teacher"] >= done.metrics["radius"]
    kip = list(run(base.replace(mode="kip", loss="squared", teacher="nystrom", centres=25, kip_batch=64)))[-1]
    assert kip.metrics["teacher_kind"] == "nystrom" and kip.metrics["radius_to_exact_teacher"] is None
    assert np.isfinite(kip.result.images).all()


@pytest.mark.parametrize("kernel,params", [("nngp-conv", {"depth": 1}), ("rbf", {}), ("rf-conv", {"width": 8, "n_models": 1})])
def test_every_kernel_family_distils_against_a_nystrom_teacher(kernel, params):
    """Image kernels (per-pixel covariances), RBF (data-dependent bandwidth) and ConvNet random features
    run the Nyström path end to end; the certificate is finite and the teacher kind is reported."""
    cfg = DistillConfig(data="sample", kernel=kernel, kernel_params=params, ipc=1, steps=2, max_per_class=20,
                        eval_every=0, snapshot_every=0, teacher="nystrom", centres=30, lam=1e-2)
    done = list(run(cfg))[-1]
    assert done.metrics["teacher_kind"] == "nystrom" and done.metrics["centres"] == 30
    assert math.isfinite(done.metrics["radius"]) and done.metrics["teacher_rel_gap"] <= cfg.teacher_tol
