"""Certified solvers for the mean-form kernel problem (math doc §1–2).

    P(w) = (1/N) Σ_i ℓ(y_i, ⟨w, φ(x_i)⟩) + λ/2 ‖w‖²,    w(α) = (1/(λN)) Σ_i α_i φ(x_i)

Given a kernel operator (``matvec``: V ↦ K V), :func:`solve` returns feasible dual variables α (N, C)
and the duality gap G(w(α), α) = (1/N) Σ_i FY_i, a certified bound: ‖w(α) − w*‖ ≤ √(2G/λ).

- smooth losses (squared, logistic, squared hinge, cross-entropy): Newton's method on the coefficients
  c = α/(λN), each Newton system solved by conjugate gradients in the K-inner product (where the
  Newton operator is self-adjoint), one kernel product per CG iteration, Armijo line search;
- hinge: on a dense CPU kernel matrix, working-set dual coordinate descent (engine.hinge_cd: the most
  violating coordinates of each column optimised together on K[W, W], then one BLAS product updates
  every score; the mean-form problem has no bias, so no pair constraint as in LIBSVM; explicit-feature
  teachers build K = ΦΦᵀ for it when it fits, see engine.operators), started from α = 0; otherwise
  (features too large for ΦΦᵀ, GPU) accelerated projected gradient (FISTA with adaptive restart),
  warm-started from the squared-hinge solution.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Generator

import numpy as np
import torch

from engine.events import TeacherProgress
from engine.generators import drain
from engine.hinge_cd import WorkingSetHinge, row_product
from engine.losses import Loss, make_loss

Tensor = torch.Tensor
MatVec = Callable[[Tensor], Tensor]
CERTIFY_SECONDS = 2.0     # coordinate descent: certify at least this often (progress events)


@dataclass
class DualSolution:
    """α: (N, C) feasible dual variables; z = K α / (λN): (N, C) scores of w(α) on the training points."""
    alpha: Tensor
    z: Tensor
    primal: float
    dual: float
    gap: float
    iterations: int
    seconds: float
    solver: str
    unit: str = "iteration"       # what ``iterations`` counts (the hinge's coordinate descent: single updates)

    @property
    def rel_gap(self) -> float:
        return self.gap / max(abs(self.primal), 1e-300)


def certificate(loss: Loss, Y: Tensor, A: Tensor, KA: Tensor, lam: float) -> tuple[float, float, float, Tensor]:
    """(primal P(w(α)), dual D(α), gap, z) for feasible α, given KA = K α."""
    N = Y.shape[0]
    z = KA / (lam * N)
    value, conj = loss.value(Y, z), loss.conj_neg(Y, A)
    # the gap = primal − dual without cancellation: the Fenchel-Young terms row by row (Loss.fenchel_young's
    # sum, from the two parts above instead of computing them again); sums, not means (a mean divides by
    # a wrapped Python number, 3 µs more), and one transfer for the four numbers
    quad, v, cj, fy = torch.stack([(A * KA).sum(), value.sum(), conj.sum(),
                                   (value + conj + (A * z).sum(-1)).sum()]).tolist()
    quad /= lam * N * N                                          # λ ‖w(α)‖² = αᵀKα / (λ N²)
    return v / N + 0.5 * quad, -cj / N - 0.5 * quad, max(fy / N, 0.0), z


def _record(loss: Loss, Y: Tensor, A: Tensor, KA: Tensor, lam: float, it: int, t0: float,
            best: DualSolution | None, solver: str, total: int = 0, unit: str = "iteration"
            ) -> tuple[DualSolution, float, TeacherProgress]:
    """Certify α = A (KA = K A); keep the best certified solution; return it, the relative gap and
    the progress event (``it`` of at most ``total`` ``unit``s: :class:`TeacherProgress`)."""
    primal, dual, gap, z = certificate(loss, Y, A, KA, lam)
    if best is None or gap < best.gap:
        best = DualSolution(A.clone(), z, primal, dual, gap, it, 0.0, solver, unit)
    rel = gap / max(abs(primal), 1e-300)
    return best, rel, TeacherProgress(it, gap, rel, time.perf_counter() - t0, total, unit)


def _cg_k_inner(matvec: MatVec, loss: Loss, Y: Tensor, f: Tensor, g: Tensor, Kg: Tensor, lam: float,
                eta: float, max_iter: int, checkpoint: Callable[[], None] | None = None
                ) -> tuple[Tensor, Tensor, int]:
    """Solve (H K / N + λ I) δ = −g by CG in ⟨a, b⟩_K = Σ a ∘ K b. Returns δ, K δ, iterations.
    ``checkpoint()`` before every kernel product (Cancel within one product of a large teacher)."""
    N = Y.shape[0]
    r, Kr = -g, -Kg                          # updated in place below: fresh tensors
    p, Kp = r.clone(), Kr.clone()
    d, Kd = torch.zeros_like(g), torch.zeros_like(g)
    D = loss.curvature(Y, f)                 # the Hessian's data at f, once for all the products below
    rr = float(_dot(r, Kr))
    rr0 = rr
    it = 0
    for it in range(1, max_iter + 1):
        if rr <= 0 or rr <= (eta ** 2) * rr0:
            break
        if checkpoint is not None:
            checkpoint()
        # one op per update (a fused multiply-add where there were two): 17 ops an iteration where
        # there were 28, 1.28 → 1.05 ms for 40 recorded IPC-10 m-point solves (one thread)
        HKp = loss.apply_curvature(D, Kp).div_(N)
        Ap = torch.add(HKp, p, alpha=lam)
        KAp = torch.add(matvec(HKp), Kp, alpha=lam)
        pAp = float(_dot(Kp, Ap))
        if not pAp > 0:
            break
        a = rr / pAp
        d.add_(p, alpha=a)
        Kd.add_(Kp, alpha=a)
        r.sub_(Ap, alpha=a)
        Kr.sub_(KAp, alpha=a)
        rr_new = float(_dot(r, Kr))
        b = rr_new / rr
        p = torch.add(r, p, alpha=b)
        Kp = torch.add(Kr, Kp, alpha=b)
        rr = rr_new
    return d, Kd, it


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Σ a ∘ b over all entries of two equal-shaped tensors, as a 0-d tensor (one kernel; a copy
    first only for a tensor whose layout cannot be flattened in place, e.g. a transposed view)."""
    return torch.dot(a.reshape(-1), b.reshape(-1))


ARMIJO_NOISE = 32       # rounding of the objective, in units of eps · (|P| + max |z|)
DENSE_NEWTON_MAX = 256   # N·C at most: a Newton step solves its (N·C)² system directly (small dense problems)


def _dense_newton_direction(K: Tensor, loss: Loss, Y: Tensor, f: Tensor, g: Tensor, lam: float) -> Tensor:
    """The exact Newton step δ (N, C) of :func:`_newton`: (H K / N + λ I) δ = −g, with H the loss's
    Hessian in z at f (block-diagonal over the N rows) and K (N, N) dense, as one LU solve of the
    (N·C)² matrix M[(i, a), (l, b)] = (H_i)_ab K_il / N + λ δ (δ flattened row-major). The distillation
    step's m-point problem: at m·C = 100 the matrix and its solve take about 0.15 ms where CG took 6
    iterations of 0.1 ms (one thread); the system is not symmetric, and is non-singular for λ > 0 (H K
    has non-negative eigenvalues)."""
    N, C = Y.shape
    # H_i (C × C) from the Hessian's product with the C unit vectors: H[b, i, a] = (H_i)_ab
    H = loss.hvp(Y, f, torch.eye(C, dtype=f.dtype, device=f.device)[:, None, :])
    M = (H.permute(1, 2, 0)[:, :, None, :] * (K / N)[:, None, :, None]).reshape(N * C, N * C)
    M.diagonal().add_(lam)
    return torch.linalg.solve(M, g.reshape(-1)).neg_().reshape(N, C)


def _newton(matvec, loss, Y, lam, tol, max_iter, alpha0, checkpoint, dense=None, certify_start=True):
    t0 = time.perf_counter()
    N, max_iter = Y.shape[0], max(0, max_iter)
    c = torch.zeros_like(Y) if alpha0 is None else alpha0 / (lam * N)
    f = matvec(c) if alpha0 is not None else torch.zeros_like(Y)
    direct = dense is not None and Y.numel() <= DENSE_NEWTON_MAX
    skip_start = alpha0 is not None and not certify_start     # a stale warm start: step before certifying
    total_cg = n_direct = 0
    best = None
    for it in range(max_iter + 1):
        A = loss.optimal_alpha(Y, f)
        KA = None
        if not (skip_start and it == 0) or it == max_iter:
            KA = matvec(A)
            best, rel, event = _record(loss, Y, A, KA, lam, it, t0, best, "newton-cg")
            yield event
            if rel <= tol or it == max_iter:
                break
        if checkpoint is not None:
            checkpoint()
        g = -A / N + lam * c                    # RKHS gradient coefficients
        if direct:
            d = _dense_newton_direction(dense, loss, Y, f, g, lam)
            Kd = matvec(d)
            n_direct += 1
        else:
            Kg = -(matvec(A) if KA is None else KA) / N + lam * f
            eta = min(0.1, math.sqrt(rel)) if best is not None else 0.1
            d, Kd, n_cg = _cg_k_inner(matvec, loss, Y, f, g, Kg, lam, eta, max_iter=1000, checkpoint=checkpoint)
            total_cg += n_cg
        # the directional derivative, the objective and its parts along d, and |f|'s largest entry: one transfer
        slope, p0, cf, df, dKd, f_max = torch.stack([
            (Kd * g).sum(), loss.value(Y, f).sum(), (c * f).sum(), (d * f).sum(), (d * Kd).sum(),
            f.abs().max()]).tolist()
        if not slope < 0:
            break
        p0 = p0 / N + 0.5 * lam * cf
        # the objective's rounding: a Newton decrease below it cannot be checked (the float32 step's
        # m-point problems near their optimum failed Armijo's test 40 times a step on rounding alone)
        noise = ARMIJO_NOISE * torch.finfo(f.dtype).eps * (abs(p0) + f_max)
        t = 1.0
        if -slope > noise:                            # else: the full Newton step (the certificate judges it)
            for _ in range(40):
                pt = (float(loss.value(Y, torch.add(f, Kd, alpha=t)).sum()) / N
                      + 0.5 * lam * (cf + 2 * t * df + t * t * dKd))
                if pt <= p0 + 1e-4 * t * slope:
                    break
                t *= 0.5
            else:
                break                                 # no checkable decrease: keep the best certified α
        c = c + t * d
        f = f + t * Kd
    if best is None:                                  # stopped before any certificate: certify where it stands
        A = loss.optimal_alpha(Y, f)
        best, _, event = _record(loss, Y, A, matvec(A), lam, it, t0, best, "newton-cg")
        yield event
    best.seconds = time.perf_counter() - t0
    best.solver = (f"newton ({best.iterations} Newton, {n_direct} direct solves)" if n_direct and not total_cg
                   else f"newton-cg ({best.iterations} Newton, {total_cg} CG iterations)")
    return best


def _power_iteration(matvec: MatVec, n: int, like: Tensor, iters: int = 30) -> float:
    g = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(n, 1, generator=g, dtype=like.dtype).to(like.device)
    lam_max = 0.0
    for _ in range(iters):
        w = matvec(v)
        lam_max = float(w.norm())
        if lam_max == 0:
            return 0.0
        v = w / lam_max
    return lam_max


def _fista_hinge(matvec, loss, Y, lam, tol, max_iter, alpha0, checkpoint):
    """Maximise D(α) = (1/N) Σ β − αᵀKα/(2λN²) over β = αy ∈ [0, 1]."""
    t0 = time.perf_counter()
    N = Y.shape[0]
    L = 1.05 * _power_iteration(matvec, N, Y) / (lam * N * N)
    step = 1.0 / max(L, 1e-300)
    A = loss.project(Y, alpha0 if alpha0 is not None else torch.zeros_like(Y))
    Yk, t = A.clone(), 1.0
    best = None
    check_every = 10
    for it in range(max_iter + 1):
        if it % check_every == 0 or it == max_iter:
            best, rel, event = _record(loss, Y, A, matvec(A), lam, it, t0, best, "fista", total=max_iter)
            yield event
            if rel <= tol or it == max_iter:
                break
            if checkpoint is not None:
                checkpoint()
        grad = Y / N - matvec(Yk) / (lam * N * N)
        A_new = loss.project(Y, Yk + step * grad)
        t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
        if float(((Yk - A_new) * (A_new - A)).sum()) > 0:      # adaptive restart (O'Donoghue & Candès)
            t_new, Yk = 1.0, A_new.clone()
        else:
            Yk = A_new + ((t - 1) / t_new) * (A_new - A)
        A, t = A_new, t_new
    best.seconds = time.perf_counter() - t0
    best.solver = f"fista ({best.iterations} iterations)"
    return best


def _exact_product(K: np.ndarray, A: np.ndarray) -> np.ndarray:
    """K A computed exactly from the rows of K where α ≠ 0 (K symmetric; zero rows add nothing), in
    blocks of rows (bounded memory)."""
    rows = np.flatnonzero((A != 0).any(1))
    if rows.size > K.shape[0] // 2:
        return K @ A
    return row_product(K, rows, A[rows])


def _cd_hinge(K: Tensor, loss, Y, lam, tol, max_iter, alpha0, checkpoint):
    """Working-set dual coordinate descent for hinge on an explicit (N, N) float64 CPU kernel matrix
    (engine.hinge_cd): per outer iteration the most violating coordinates of each column are
    optimised together on K[W, W], then every score is updated by one product.

    Certificates use an exact product K α of the current feasible α (the running scores are never
    trusted for a reported gap): when the running scores say the gap is below ``tol``, every
    ``CERTIFY_SECONDS`` (or ten certificates' time, if longer), and at the end (after ``max_iter``
    sweeps' worth, N coordinates per column each).
    """
    t0 = time.perf_counter()
    N, C = Y.shape
    Kn = K.detach().cpu().numpy()
    y = Y.detach().cpu().numpy()
    beta0 = None if alpha0 is None else (loss.project(Y, alpha0) * Y).detach().cpu().numpy()
    ws = WorkingSetHinge(Kn, y, lam, beta0)
    budget = max(0, max_iter) * N * C               # max_iter = 0: certify the starting point only
    best, cert_s, last, failed_at = None, 0.0, t0, -1
    while True:
        t = time.perf_counter()
        A = ws.alpha
        KA = _exact_product(Kn, A)
        ws.set_scores(KA)
        best, rel, event = _record(loss, Y, torch.from_numpy(A), torch.from_numpy(KA), lam, ws.updates, t0,
                                   best, "coordinate descent",       # (_record keeps its own copy of α)
                                   total=budget, unit="coordinate update")
        last = time.perf_counter()
        cert_s = last - t
        yield event
        if rel <= tol or ws.updates >= budget:
            break
        failed_at = ws.updates
        while True:
            if checkpoint is not None:
                checkpoint()
            if ws.step() == 0.0:
                break                                       # optimal for the running scores: certify
            gap, primal = ws.running_gap()
            if ws.updates >= budget:
                break
            if gap <= 0.5 * tol * abs(primal) and ws.updates - failed_at >= ws.q * C:
                break
            if time.perf_counter() - last >= max(CERTIFY_SECONDS, 10 * cert_s):
                break
        if ws.updates == failed_at:                         # no coordinate moved: nothing left to gain
            break
    best.seconds = time.perf_counter() - t0
    best.solver = f"coordinate descent ({best.iterations} updates)"
    return best


def greedy_cd_hinge(K: Tensor, loss, Y, lam, tol, max_iter, alpha0, checkpoint):
    """The previous solver, kept as a reference for ``bench --suite svm`` and the tests (not used by
    :func:`solve_iter`): greedy dual coordinate descent for hinge on an explicit (N, N) float64 CPU kernel matrix.

    Per column c (one-vs-rest), with β = α y ∈ [0, 1] and scores z = K α / (λN), the dual gradient is
    g_i = (y_i z_i − 1)/N and the diagonal curvature K_ii/(λN²). Each update takes the coordinate with
    the largest projected-gradient decrease g_i²/K_ii, sets β_i ← clip(β_i − (y_i z_i − 1) λN / K_ii),
    and updates z with kernel row i (O(N)). Every N updates per column the whole α is certified with
    an exact product K α (the running z is never trusted for the reported gap).
    """
    t0 = time.perf_counter()
    N, C = Y.shape
    Kn = K.detach().cpu().numpy()
    diag = np.maximum(np.diagonal(Kn).copy(), 1e-300)
    y = Y.detach().cpu().numpy()
    A = loss.project(Y, alpha0 if alpha0 is not None else torch.zeros_like(Y)).detach().cpu().numpy().copy()
    best, updates = None, 0
    chunk = max(N, 100)
    for epoch in range(max_iter + 1):
        KA = Kn @ A                       # exact: drops the rounding the running updates accumulated
        best, rel, event = _record(loss, Y, torch.from_numpy(A), torch.from_numpy(KA), lam, updates, t0, best,
                                   "coordinate descent")     # (_record keeps its own copy of α)
        z = KA / (lam * N)
        yield event
        if rel <= tol or epoch == max_iter:
            break
        if checkpoint is not None:
            checkpoint()
        for c in range(C):
            yc, zc, beta = y[:, c], z[:, c], A[:, c] * y[:, c]
            for _ in range(chunk):
                g = yc * zc - 1.0
                pg = np.where(beta <= 0.0, np.minimum(g, 0.0), np.where(beta >= 1.0, np.maximum(g, 0.0), g))
                i = int(np.argmax(pg * pg / diag))
                if pg[i] == 0.0:
                    break
                new = min(1.0, max(0.0, beta[i] - g[i] * lam * N / diag[i]))
                delta = (new - beta[i]) * yc[i]
                beta[i] = new
                zc += Kn[i] * (delta / (lam * N))
                updates += 1
            A[:, c] = beta * yc
    best.seconds = time.perf_counter() - t0
    best.solver = f"coordinate descent ({best.iterations} updates)"
    return best


def cd_hinge(loss: Loss, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether a hinge problem on ``device`` in ``dtype`` is solved by coordinate descent on a dense
    kernel matrix (float64 on the CPU) rather than FISTA. The run estimate plans by the same rule."""
    return not loss.smooth and device.type == "cpu" and dtype == torch.float64


def solve_iter(matvec: MatVec, Y: Tensor, loss: Loss, lam: float, *, tol: float = 1e-6, max_iter: int = 200,
               alpha0: Tensor | None = None, checkpoint: Callable[[], None] | None = None,
               dense: Tensor | None = None, certify_start: bool = True
               ) -> Generator[TeacherProgress, None, DualSolution]:
    """Solve the mean-form problem on N points with labels ``Y`` (N, C) to relative gap ``tol``.

    A generator: yields :class:`TeacherProgress` at every certificate and returns the best certified
    :class:`DualSolution` seen (``sol = yield from solve_iter(...)``); it never returns an infeasible α.
    ``checkpoint()`` is called between iterations (it may block, or raise to cancel). Given ``dense``
    (the (N, N) matrix behind ``matvec``) in float64 on the CPU, hinge runs working-set coordinate
    descent (up to ``max_iter`` sweeps' worth of N coordinate updates per column), otherwise up to
    ``50 · max_iter`` FISTA steps warm-started from a rough squared-hinge solution. ``certify_start=False``:
    a smooth loss's Newton takes its first step from ``alpha0`` before it certifies anything (a warm
    start from a neighbouring problem, which never passes the test: the distillation step's last dual).
    """
    if loss.smooth:
        return (yield from _newton(matvec, loss, Y, lam, tol, max_iter, alpha0, checkpoint, dense, certify_start))
    if dense is not None and cd_hinge(loss, dense.device, dense.dtype):
        return (yield from _cd_hinge(dense, loss, Y, lam, tol, max_iter, alpha0, checkpoint))
    if alpha0 is None:
        warm = drain(_newton(matvec, make_loss("squared-hinge"), Y, lam, 1e-3, 30, None, checkpoint))
        alpha0 = warm.alpha
    return (yield from _fista_hinge(matvec, loss, Y, lam, tol, 50 * max_iter, alpha0, checkpoint))


def solve(matvec: MatVec, Y: Tensor, loss: Loss, lam: float, *,
          progress: Callable[[TeacherProgress], None] | None = None, **kw) -> DualSolution:
    """:func:`solve_iter` run to completion; ``progress(event)`` receives each :class:`TeacherProgress`."""
    return drain(solve_iter(matvec, Y, loss, lam, **kw), progress)


def solve_dense(K: Tensor, Y: Tensor, loss: Loss, lam: float, **kw) -> DualSolution:
    """:func:`solve` with an explicit (N, N) kernel matrix (small problems: the distilled set).

    Two kinds are solved on the CPU in float64 whatever K's device and dtype, with α and z returned
    on K's device in K's dtype:

    - the hinge, whatever N (the callers' problems are distilled sets: m up to a few thousand points;
      working-set coordinate descent needs it; float32 took FISTA, up to 400 iterations a
      distillation step, and on an H200 the IPC-1 hinge step ran at 10 steps/s against 197 on the
      CPU path);
    - smooth losses small enough for direct Newton systems (N·C ≤ ``DENSE_NEWTON_MAX``): float32's
      rounding is near the relative gap of 1e-6 that the distillation step asks for, and 1 in 3 of its
      IPC-1 cross-entropy solves needed 2 to 8 Newton steps where float64 needed one (0.90 → 0.62 ms a
      solve on the CPU); on a GPU each of those steps is some 30 kernel launches and transfers.

    The cast keeps α feasible: rounding is monotone, so an α between bounds that are themselves
    float32 values (0, 1, the labels) stays between them."""
    small = not loss.smooth or Y.numel() <= DENSE_NEWTON_MAX
    if small and (K.device.type != "cpu" or K.dtype != torch.float64):
        alpha0 = kw.pop("alpha0", None)
        as64 = {"device": "cpu", "dtype": torch.float64}
        sol = solve_dense(K.to(**as64), Y.to(**as64), loss, lam,
                          alpha0=None if alpha0 is None else alpha0.to(**as64), **kw)
        sol.alpha, sol.z = sol.alpha.to(K.device, K.dtype), sol.z.to(K.device, K.dtype)
        return sol
    return solve(lambda V: K @ V, Y, loss, lam, dense=K, **kw)
