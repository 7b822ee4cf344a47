"""The certified solver against scikit-learn on the same mean-form problems (explicit features).

Mean form: (1/n) Σ ℓ + λ/2 ‖w‖²  ⇔  scikit-learn's  ½‖w‖² + C Σ ℓ  with C = 1/(λ n)
(squared hinge: scikit-learn has no ½, so C = 1/(2 λ n)). No intercept anywhere.
"""
import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from engine.kernels import make_kernel
from engine.losses import make_loss
from engine.solver import DENSE_NEWTON_MAX, solve, solve_dense

LAM = 1e-2


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    n, d, C = 300, 12, 3
    labels = rng.integers(0, C, n)
    X = rng.standard_normal((n, d)) + 1.5 * np.eye(C, d)[labels]
    Phi = X / np.sqrt(d)                      # the linear kernel's explicit features
    K = torch.from_numpy(Phi @ Phi.T)
    return X, Phi, K, labels, C


def primal(name, Phi, W, labels, C):
    Z = Phi @ W
    if name == "cross-entropy":
        Y = np.eye(C)[labels]
        data = np.mean(-(Y * Z).sum(1) + logsumexp(Z, axis=1))
    else:
        y = 2 * np.eye(C)[labels] - 1
        if name == "hinge":
            data = np.mean(np.maximum(0, 1 - y * Z).sum(1))
        elif name == "squared-hinge":
            data = np.mean(0.5 * (np.maximum(0, 1 - y * Z) ** 2).sum(1))
        else:
            data = np.mean(np.log1p(np.exp(-y * Z)).sum(1))
    return data + LAM / 2 * (W ** 2).sum()


def sklearn_weights(name, Phi, labels, C):
    n = len(labels)
    if name == "cross-entropy":
        m = LogisticRegression(C=1 / (LAM * n), fit_intercept=False, tol=1e-12, max_iter=20000).fit(Phi, labels)
        return m.coef_.T
    cols = []
    for c in range(C):
        yc = (labels == c).astype(int)
        if name == "logistic":
            m = LogisticRegression(C=1 / (LAM * n), fit_intercept=False, tol=1e-12, max_iter=20000)
        elif name == "hinge":
            m = LinearSVC(loss="hinge", C=1 / (LAM * n), fit_intercept=False, tol=1e-12, max_iter=500000, random_state=0)
        else:
            m = LinearSVC(loss="squared_hinge", C=1 / (2 * LAM * n), fit_intercept=False, tol=1e-12, max_iter=500000, random_state=0)
        cols.append(m.fit(Phi, yc).coef_.ravel())
    return np.stack(cols, 1)


@pytest.mark.parametrize("name", ["logistic", "hinge", "squared-hinge", "cross-entropy"])
def test_objective_matches_sklearn(problem, name):
    X, Phi, K, labels, C = problem
    loss = make_loss(name)
    Y = loss.targets(torch.from_numpy(labels), C)
    sol = solve_dense(K, Y, loss, LAM, tol=1e-10, max_iter=100)
    assert sol.rel_gap <= 1e-8
    W_ours = Phi.T @ sol.alpha.numpy() / (LAM * len(labels))
    ours = primal(name, Phi, W_ours, labels, C)
    ref = primal(name, Phi, sklearn_weights(name, Phi, labels, C), labels, C)
    assert ours == pytest.approx(sol.primal, rel=1e-10)
    # ours is certified optimal to 1e-8: never worse than scikit-learn beyond that, and close to it
    # (liblinear's hinge solver stops at its own, looser criterion: it may end ~1e-4 above optimum)
    assert ours <= ref * (1 + 1e-8)
    assert ours == pytest.approx(ref, rel=1e-4 if name == "hinge" else 1e-6)


def test_squared_loss_matches_kernel_ridge_closed_form(problem):
    X, Phi, K, labels, C = problem
    n = len(labels)
    Y = make_loss("squared").targets(torch.from_numpy(labels), C)
    sol = solve_dense(K, Y, make_loss("squared"), LAM, tol=1e-12)
    kr = KernelRidge(alpha=LAM * n, kernel="precomputed").fit(K.numpy(), Y.numpy())
    # KRR dual coefficients c = (K + λn I)⁻¹ Y and ours α = λ n c
    assert np.allclose(sol.alpha.numpy() / (LAM * n), kr.dual_coef_, atol=1e-9)


def test_gap_is_valid_upper_bound_on_distance_to_optimum(problem):
    """A loose early solution's gap bounds its distance to the tight optimum: ‖w − w*‖² ≤ 2G/λ."""
    X, Phi, K, labels, C = problem
    loss = make_loss("logistic")
    Y = loss.targets(torch.from_numpy(labels), C)
    n = len(labels)
    best = solve_dense(K, Y, loss, LAM, tol=1e-12)
    for it in (0, 1, 2):
        rough = solve_dense(K, Y, loss, LAM, tol=1e-12, max_iter=it)
        d = (rough.alpha - best.alpha) / (LAM * n)
        dist2 = float((d * (K @ d)).sum())
        assert dist2 <= 2 * rough.gap / LAM + 1e-12


def test_progress_events_and_cancel(problem):
    X, Phi, K, labels, C = problem
    loss = make_loss("cross-entropy")
    Y = loss.targets(torch.from_numpy(labels), C)
    seen = []
    solve(lambda V: K @ V, Y, loss, LAM, tol=1e-10, progress=seen.append)
    assert len(seen) >= 2 and seen[-1].rel_gap <= 1e-10 and seen[0].gap > seen[-1].gap

    class Stop(Exception):
        pass

    def checkpoint():
        raise Stop

    with pytest.raises(Stop):
        solve(lambda V: K @ V, Y, loss, LAM, tol=1e-10, checkpoint=checkpoint)


def test_nngp_kernel_teacher_solves_to_tolerance():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 30, dtype=torch.float64, generator=g)
    labels = (x[:, 0] > 0).long()
    K = make_kernel("ntk-fc", depth=2)(x)
    for name in ("squared", "logistic", "hinge", "squared-hinge", "cross-entropy"):
        loss = make_loss(name)
        sol = solve_dense(K, loss.targets(labels, 2), loss, 1e-3, tol=1e-6)
        assert sol.rel_gap <= 1e-6, (name, sol.rel_gap, sol.solver)


def test_hinge_coordinate_descent_and_fista_reach_the_same_optimum(problem):
    """The two hinge solvers (dense CPU matrix → coordinate descent; operator only → FISTA) are
    independent algorithms; both certified, their primal values must agree to their gaps."""
    _, _, K, labels, C = problem
    loss = make_loss("hinge")
    Y = loss.targets(torch.from_numpy(labels), C)
    cd = solve(lambda V: K @ V, Y, loss, LAM, tol=1e-9, dense=K)
    fista = solve(lambda V: K @ V, Y, loss, LAM, tol=1e-7)
    assert cd.solver.startswith("coordinate descent") and fista.solver.startswith("fista")
    assert (cd.unit, fista.unit) == ("coordinate update", "iteration")       # what .iterations counts
    assert cd.rel_gap <= 1e-9 and fista.rel_gap <= 1e-7
    # each primal is within its own gap of the optimum, so they are within the sum of the gaps
    assert abs(cd.primal - fista.primal) <= cd.gap + fista.gap + 1e-15


@pytest.mark.parametrize("name", ["logistic", "squared-hinge", "cross-entropy", "squared"])
def test_small_dense_problems_take_exact_newton_steps_to_sklearns_optimum(problem, name):
    # a distilled set's size (N·C ≤ DENSE_NEWTON_MAX): each Newton step is one direct solve of the
    # (N·C)² system; the optimum is scikit-learn's (KRR's closed form for the squared loss)
    X, Phi, K, labels, C = problem
    n = 60
    Phi, K, labels = Phi[:n], K[:n, :n], labels[:n]
    assert n * C <= DENSE_NEWTON_MAX
    loss = make_loss(name)
    Y = loss.targets(torch.from_numpy(labels), C)
    sol = solve_dense(K, Y, loss, LAM, tol=1e-10, max_iter=100)
    assert "direct solves" in sol.solver and sol.rel_gap <= 1e-10
    W_ours = Phi.T @ sol.alpha.numpy() / (LAM * n)
    if name == "squared":
        kr = KernelRidge(alpha=LAM * n, kernel="precomputed").fit(K.numpy(), Y.numpy())
        np.testing.assert_allclose(sol.alpha.numpy() / (LAM * n), kr.dual_coef_, atol=1e-9)
        assert sol.iterations == 1                           # exact Newton on a quadratic: one step
        return
    ref = primal(name, Phi, sklearn_weights(name, Phi, labels, C), labels, C)
    ours = primal(name, Phi, W_ours, labels, C)
    assert ours <= ref * (1 + 1e-10) and ours == pytest.approx(ref, rel=1e-6)
    # quadratic convergence: no more Newton steps than the CG-based solver (same start, same tolerance)
    cg = solve(lambda V: K @ V, Y, loss, LAM, tol=1e-10, max_iter=100)
    assert "CG" in cg.solver and sol.iterations <= cg.iterations


@pytest.mark.parametrize("name", ["cross-entropy", "logistic", "squared-hinge", "squared"])
def test_exact_newton_direction_solves_the_newton_system_built_by_autograd(name):
    # the direction against the Hessian of the coefficient objective P(c) = mean ℓ(y, K c) + λ/2 cᵀKc,
    # taken by torch.autograd.functional (Newton in the K-inner product: K (H K/N + λ I) δ = −∇P)
    from engine.solver import _dense_newton_direction
    rng = np.random.default_rng(1)
    N, C = 7, 4
    F = rng.standard_normal((N, 5))
    K = torch.from_numpy(F @ F.T / 5 + 0.1 * np.eye(N))
    loss = make_loss(name)
    Y = loss.targets(torch.from_numpy(rng.integers(0, C, N)), C)
    c = torch.from_numpy(rng.standard_normal((N, C)) * 0.3)

    def P(cc):
        f = K @ cc
        return loss.value(Y, f).mean() + 0.5 * LAM * (cc * f).sum()

    grad = torch.autograd.functional.jacobian(P, c)
    hess = torch.autograd.functional.hessian(P, c).reshape(N * C, N * C)
    f = K @ c
    g = -loss.optimal_alpha(Y, f) / N + LAM * c            # the solver's RKHS gradient coefficients
    torch.testing.assert_close(K @ g, grad)                  # ∇P = K g
    d = _dense_newton_direction(K, loss, Y, f, g, LAM)
    torch.testing.assert_close(hess @ d.reshape(-1), -grad.reshape(-1), rtol=1e-9, atol=1e-12)


def test_float32_solve_started_at_its_optimum_does_not_search_below_rounding():
    # the distillation step's situation: a float32 problem of 10 points and 10 classes (MNIST-sized
    # inputs, λ = 1e-3) warm-started at its optimum. Armijo's test cannot see a decrease below the
    # objective's rounding; the solver must not halve the step dozens of times on rounding alone (it
    # did: 298 loss evaluations in 8 Newton steps here), and stays certified
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 10)
    X = rng.standard_normal((10, 784)) + 1.5 * np.eye(10, 784)[labels]
    K = torch.from_numpy(X @ X.T / 784)
    loss = make_loss("cross-entropy")
    Y = loss.targets(torch.from_numpy(labels), 10)
    best = solve_dense(K, Y, loss, 1e-3, tol=1e-13, max_iter=100)
    calls = []

    class Counting(type(loss)):
        def value(self, Y, Z):
            calls.append(1)
            return super().value(Y, Z)

    # the float32 Newton itself (solve_dense takes a problem this small to float64 on the CPU; a GPU's
    # stays in float32)
    Kf = K.float()
    sol = solve(lambda V: Kf @ V, Y.float(), Counting(), 1e-3, tol=1e-9, max_iter=8, alpha0=best.alpha.float(),
                dense=Kf)
    assert "direct solves" in sol.solver and sol.alpha.dtype == torch.float32
    assert len(calls) <= 30, (len(calls), sol.solver)     # 3-4 a Newton step (8 here), not ~30
    assert sol.rel_gap <= 1e-5


def _step_problem(seed, shift=0.0):
    """A distillation step's m-point problem: 10 images of 10 classes (MNIST-sized inputs, λ = 1e-3),
    float32, its images moved by ``shift`` along a fixed random direction."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, 10)
    X = rng.standard_normal((10, 784)) + 1.5 * np.eye(10, 784)[labels]
    X = X + shift * np.random.default_rng(99).standard_normal(X.shape)
    return torch.from_numpy(X @ X.T / 784).float(), labels


@pytest.mark.parametrize("name", ["cross-entropy", "logistic", "squared-hinge", "squared"])
def test_warm_started_newton_steps_before_its_first_certificate(name):
    # certify_start=False (the distillation step: its last dual, for images that have moved since):
    # no certificate of the stale start, the same certified optimum, and a certificate even when the
    # solver stops before its first one (started at the optimum, the Newton step has no descent)
    from engine.solver import solve_iter
    loss = make_loss(name)
    K, labels = _step_problem(0)
    K, Y = K.double(), loss.targets(torch.from_numpy(labels), 10)
    opt = solve_dense(K, Y, loss, 1e-3, tol=1e-12, max_iter=50)
    K2 = _step_problem(0, shift=0.05)[0].double()

    def run(K, **kw):
        events = []
        gen = solve_iter(lambda V: K @ V, Y, loss, 1e-3, tol=1e-9, max_iter=8, dense=K, alpha0=opt.alpha, **kw)
        try:
            while True:
                events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value

    events, sol = run(K2, certify_start=False)
    ref_events, ref = run(K2)
    assert ref_events[0].iteration == 0 and ref_events[0].rel_gap > 1e-9       # the stale start fails the test
    assert [e.iteration for e in events] == [e.iteration for e in ref_events[1:]]
    assert sol.rel_gap <= 1e-9
    torch.testing.assert_close(sol.alpha, ref.alpha, rtol=0, atol=1e-8)
    # no Newton step allowed: the start is certified after all
    zero = solve(lambda V: K2 @ V, Y, loss, 1e-3, tol=1e-9, max_iter=0, dense=K2, alpha0=opt.alpha,
                 certify_start=False)
    assert zero.iterations == 0 and zero.gap == pytest.approx(ref_events[0].gap, rel=1e-12)


def test_newton_stopped_before_its_first_certificate_still_certifies(monkeypatch):
    # a direction without descent ends the Newton loop at once; with the start's certificate skipped,
    # the solver must certify where it stands rather than return nothing
    import engine.solver as solver
    real = solver._dense_newton_direction
    monkeypatch.setattr(solver, "_dense_newton_direction", lambda *a: -real(*a))      # an ascent direction
    loss = make_loss("cross-entropy")
    K, labels = _step_problem(2)
    K, Y = K.double(), loss.targets(torch.from_numpy(labels), 10)
    alpha0 = 0.5 * loss.optimal_alpha(Y, torch.zeros_like(Y))
    sol = solve(lambda V: K @ V, Y, loss, 1e-3, tol=1e-9, max_iter=8, dense=K, alpha0=alpha0, certify_start=False)
    primal, dual, gap, _ = solver.certificate(loss, Y, sol.alpha, K @ sol.alpha, 1e-3)
    assert sol.gap == pytest.approx(gap, rel=1e-12) and sol.gap > 0 and "0 Newton" in sol.solver


@pytest.mark.parametrize("name", ["cross-entropy", "logistic", "squared-hinge", "squared"])
def test_small_float32_problem_is_solved_in_float64_and_comes_back_feasible(name, monkeypatch):
    # solve_dense on the CPU takes N·C ≤ DENSE_NEWTON_MAX problems to float64: float32's rounding
    # sits near the step's 1e-6 relative gap (cross-entropy needed 2-8 Newton steps for 1 in 3 of its
    # solves). The cast-back α must stay feasible and keep its certified gap (recomputed in float64)
    import engine.solver as solver
    from engine.solver import certificate
    seen, real = [], solver.solve

    def recording(mv, Y, *a, **kw):
        seen.append((Y.dtype, kw["dense"].dtype))
        return real(mv, Y, *a, **kw)

    monkeypatch.setattr(solver, "solve", recording)
    loss = make_loss(name)
    K, labels = _step_problem(5)
    Y = loss.targets(torch.from_numpy(labels), 10, dtype=torch.float32)
    warm = solve_dense(K.double(), Y.double(), loss, 1e-3, tol=1e-12, max_iter=50).alpha.float()
    K2 = _step_problem(5, shift=0.005)[0]       # cross-entropy: 2 Newton steps in float32
    sol = solve_dense(K2, Y, loss, 1e-3, tol=1e-6, max_iter=8, alpha0=warm, certify_start=False)
    assert sol.alpha.dtype == sol.z.dtype == torch.float32
    assert seen and set(seen) == {(torch.float64, torch.float64)}, seen         # the solver saw float64 only
    # one step from a neighbour's optimum (two for the squared hinge, whose active set may change)
    assert sol.iterations <= (2 if name == "squared-hinge" else 1), sol.solver
    A = sol.alpha
    if name == "cross-entropy":
        assert ((Y - A) >= 0).all()
    elif name != "squared":
        beta = A * Y
        assert ((beta >= 0) & (beta <= (1 if name == "logistic" else np.inf))).all()
    K64, A64 = K2.double(), A.double()
    primal, _, gap, _ = certificate(loss, Y.double(), A64, K64 @ A64, 1e-3)
    assert gap / primal <= 2e-6


@pytest.mark.parametrize("name", ["squared", "logistic", "hinge", "squared-hinge", "cross-entropy"])
def test_certificate_gap_is_the_losses_own_fenchel_young_mean(problem, name):
    # the certificate sums the Fenchel-Young terms from the value and conjugate it computes anyway;
    # it must equal the loss's own fenchel_young (should a loss ever override it)
    from engine.solver import certificate
    X, Phi, K, labels, C = problem
    loss = make_loss(name)
    Y = loss.targets(torch.from_numpy(labels), C)
    A = solve_dense(K, Y, loss, LAM, tol=1e-3, max_iter=3).alpha
    primal, dual, gap, z = certificate(loss, Y, A, K @ A, LAM)
    assert gap == max(float(loss.fenchel_young(Y, z, A).mean()), 0.0)
    assert gap == pytest.approx(primal - dual, rel=1e-9, abs=1e-12)


def test_newton_cg_accepts_a_matvec_that_returns_transposed_views():
    # the inner loop's inner products flatten their operands; a kernel product that hands back a
    # transposed view (as engine.kernels.fc_fused.mm_nt_thin does) must give the same solution
    g = torch.Generator().manual_seed(6)
    X = torch.randn(40, 5, generator=g, dtype=torch.float64)
    K = X @ X.T + 0.1 * torch.eye(40, dtype=torch.float64)
    loss = make_loss("cross-entropy")
    Y = loss.targets(torch.arange(40) % 3, 3)
    plain = solve(lambda V: K @ V, Y, loss, 1e-2, tol=1e-10, max_iter=50)
    viewed = solve(lambda V: (V.T @ K).T, Y, loss, 1e-2, tol=1e-10, max_iter=50)
    assert viewed.gap <= 1e-10 * abs(viewed.primal)
    torch.testing.assert_close(viewed.alpha, plain.alpha, rtol=0, atol=1e-8)
