"""Nyström teachers: the full-data problem restricted to the span of M centres (Falkon's recipe).

The teacher is w* = Σ_j c_j φ(z_j) over M centres Z chosen among the n training images, the
minimiser over that span of the full-data primal (math doc §1, mean form):

    P(c) = (1/n) Σ_i ℓ(y_i, (K_XZ c)_i) + λ/2 · cᵀ K_ZZ c .

It is solved as the explicit-feature problem with features Φ = K_XZ L⁻ᵀ, L Lᵀ = K_ZZ + εI (ε is the
jitter Cholesky needs, reported), in the variable β = Lᵀc:

    P(β) = (1/n) Σ_i ℓ(y_i, (Φβ)_i) + λ/2 ‖β‖² ,

by Newton's method whose systems are solved by conjugate gradients with Falkon's preconditioner:
the centres are a sample of X, so ΦᵀDΦ/n ≈ d̄ · LᵀL/M (d̄ the mean curvature of the loss) and
B = d̄ LᵀL/M + λI = A Aᵀ is factorised once per change of d̄. With α = −ℓ'(Φβ) (feasible), the
feature problem's duality gap is exact and certified at every iterate:

    G(β, α) = (1/n) Σ_i FY_i(f_i, α_i) + 1/(2λ) · ‖λβ − Φᵀα/n‖²      (both terms ≥ 0).

Hinge (not smooth): Newton on the Huber-smoothed hinge with a shrinking smoothing width μ; the
smoothed loss's derivative is a feasible hinge dual, so the *hinge* gap above certifies every iterate.

Only the teacher touches all n images: every pass over the data is a sum over row tiles of K(X, Z)
(:class:`CentreRows`), cached (n × M float64) when it fits the budget, else recomputed tile by tile;
pause and cancel are honoured between tiles. Under torchrun (:mod:`engine.cluster`) each rank holds a
contiguous shard of the rows and its tiles; the sums are all-reduced, the M-sized iterates replicated. Distillation then needs the centres and c alone:
f*(x̃) = k(x̃, Z) c and ‖w*‖² = cᵀ K_ZZ c (the exact kernel everywhere).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Generator, Iterator

import torch

from engine.cluster import Cluster
from engine.events import Progress, TeacherProgress
from engine.kernels import Kernel
from engine.losses import Loss, SmoothedHingeLoss
from engine.solver import DualSolution
from engine.tensors import ROW_TILE

Tensor = torch.Tensor
Checkpoint = Callable[[], None] | None

FEATURE_ROWS = ROW_TILE      # row tile of explicit-feature kernels (φ(x_t) φ(Z)ᵀ)
HINGE_MU0, HINGE_MU_SHRINK = 1.0, 0.1      # Huber-hinge smoothing widths μ₀, μ₀/10, …
PCG_MAX_ITER = 50           # CG iterations per Newton system (inexact Newton beyond that)


# ------------------------------------------------------------------------------------------ centres
def select_centres(x: Tensor, labels: Tensor, m: int, method: str, seed: int, kernel: Kernel | None = None,
                   checkpoint: Checkpoint = None, cluster: Cluster | None = None) -> Tensor:
    """Global indices (M,) of ``m`` distinct centres among the n training images with class ``labels``
    (n,), whose rows ``x`` (n_local, …) are this rank's shard (``cluster.shard(n)``; all n rows for
    one process).

    ``uniform``: class-balanced uniform sample (each class gets its share of M, largest remainders
    first, at least one per class when M ≥ classes). ``kmeans++``: kernel k-means++ seeding (D²
    sampling with d²(x, z) = k(x,x) + k(z,z) − 2k(x,z)), one kernel column per centre."""
    n = labels.shape[0]
    m = min(int(m), n)
    g = torch.Generator().manual_seed(int(seed))
    if method == "kmeans++":
        return _kmeanspp(kernel, x, n, m, g, checkpoint, cluster or Cluster())
    if method != "uniform":
        raise ValueError(f"unknown centre selection {method!r}")
    y = labels.cpu()
    classes, counts = torch.unique(y, return_counts=True)
    share = counts.double() * m / n
    take = share.floor().long()
    if m >= len(classes):
        take = take.clamp_min(1)
    for i in torch.argsort(share - share.floor(), descending=True).tolist():
        if int(take.sum()) >= m:
            break
        take[i] += 1
    while int(take.sum()) > m:                    # the one-per-class floor can overshoot: trim the largest
        take[int(torch.argmax(take))] -= 1
    picked = []
    for c, t in zip(classes.tolist(), take.tolist()):
        members = torch.nonzero(y == c).flatten()
        picked.append(members[torch.randperm(len(members), generator=g)[:t]])
    return torch.sort(torch.cat(picked)).values.to(x.device)


@torch.no_grad()
def _kmeanspp(kernel: Kernel, x: Tensor, n: int, m: int, g: torch.Generator, checkpoint: Checkpoint,
              cluster: Cluster) -> Tensor:
    """D² sampling over the n rows sharded as ``x`` (n_local, …): each rank updates the distances of its
    rows, the draw is made on the gathered (n,) distances, identically on every rank."""
    if kernel is None:
        raise ValueError("kmeans++ centre selection needs the kernel")
    start = cluster.shard(n).start
    kdiag = kernel.diag(x).double().cpu()
    d2 = torch.full((x.shape[0],), float("inf"), dtype=torch.float64)
    chosen = [int(torch.randint(n, (1,), generator=g))]
    for _ in range(1, m):
        i = chosen[-1]
        xi = cluster.rows(x, n, [i])
        kii = kernel.diag(xi).double().cpu()[0]
        col = kernel(x, xi)[:, 0].double().cpu()
        d2 = torch.minimum(d2, (kdiag + kii - 2 * col).clamp_min(0))
        local = [c - start for c in chosen if 0 <= c - start < x.shape[0]]
        d2[local] = 0.0
        every = cluster.cat(d2)
        total = float(every.sum())
        if checkpoint is not None:
            checkpoint()
        if not total > 0:                          # every point is a centre already (duplicates)
            rest = torch.ones(n, dtype=torch.bool)
            rest[chosen] = False
            chosen += torch.nonzero(rest).flatten()[: m - len(chosen)].tolist()
            break
        chosen.append(int(torch.multinomial(every / total, 1, generator=g)))
    return torch.sort(torch.tensor(chosen[:m], dtype=torch.long)).values.to(x.device)


# --------------------------------------------------------------------------------------- K(X, Z) rows
class CentreRows:
    """K(X, Z) (n × M, x's dtype) by row tiles: cached when ``cache`` (built once, tile by tile,
    without a concatenation copy), else recomputed in every pass. ``passes`` counts the passes."""

    def __init__(self, kernel: Kernel, x: Tensor, z: Tensor, *, cache: bool, checkpoint: Checkpoint = None):
        self.kernel, self.x, self.z, self.checkpoint = kernel, x, z, checkpoint
        self.n, self.m = x.shape[0], z.shape[0]
        with torch.no_grad():
            self.z_features = kernel.features(z) if kernel.explicit else None
            rows = (FEATURE_ROWS if kernel.explicit
                    else kernel.tile_rows(kernel.prepare(x), self.m))
        self.rows = max(1, min(self.n, rows))
        self.cache: Tensor | None = None
        self.passes = 0
        if cache:
            self.cache = torch.empty((self.n, self.m), dtype=x.dtype, device=x.device)

    @torch.no_grad()
    def _block(self, sl: slice) -> Tensor:
        if self.z_features is not None:
            return self.kernel.features(self.x[sl]) @ self.z_features.T
        return self.kernel(self.x[sl], self.z)

    def build(self) -> Iterator[Progress]:
        """Fill the cache (no-op without one), yielding :class:`Progress` after each tile."""
        if self.cache is None:
            return
        t0 = time.perf_counter()
        for i in range(0, self.n, self.rows):
            if self.checkpoint is not None:
                self.checkpoint()
            sl = slice(i, min(self.n, i + self.rows))
            self.cache[sl] = self._block(sl)
            yield Progress("kernel", sl.stop, self.n, time.perf_counter() - t0)

    def tiles(self) -> Iterator[tuple[slice, Tensor]]:
        """(rows, K(x[rows], Z)) over all rows; checkpoint between tiles."""
        self.passes += 1
        for i in range(0, self.n, self.rows):
            if self.checkpoint is not None:
                self.checkpoint()
            sl = slice(i, min(self.n, i + self.rows))
            yield sl, (self.cache[sl] if self.cache is not None else self._block(sl))

    def times(self, c: Tensor) -> Tensor:
        """K_XZ c: (n, C) for c (M, C)."""
        return torch.cat([t @ c for _, t in self.tiles()])


# ------------------------------------------------------------------------------------------- solver
def tmul(t: Tensor, u: Tensor) -> Tensor:
    """tᵀ u for a row-major tile t (rows, M) and u (rows, C), as (uᵀ t)ᵀ: BLAS streams t row by row
    (4× faster than ``t.T @ u`` for 60,000 × 2,000 float64 on this project's 2-core machines)."""
    return (u.T.contiguous() @ t).T


@dataclass
class NystromFactor:
    """The jittered Cholesky factor L (lower) of K_ZZ (M, M), L Lᵀ = K_ZZ + ``eps``·I, and LᵀL."""
    L: Tensor
    eps: float
    LtL: Tensor

    @classmethod
    def of(cls, kzz: Tensor) -> "NystromFactor":
        scale = float(kzz.diagonal().mean()) if kzz.numel() else 1.0
        eye = torch.eye(kzz.shape[0], dtype=kzz.dtype, device=kzz.device)
        eps = 1e-12 * scale
        while True:
            L, info = torch.linalg.cholesky_ex(kzz + eps * eye)
            if int(info) == 0 and bool(torch.isfinite(L).all()):
                return cls(L, eps, L.T @ L)
            eps *= 100
            if eps > scale:
                raise RuntimeError("K(Z, Z) is not positive semi-definite: the kernel is invalid on these centres")

    def c_of(self, beta: Tensor) -> Tensor:
        """c = L⁻ᵀ β."""
        return torch.linalg.solve_triangular(self.L.T, beta, upper=True)

    def phi_t(self, kt: Tensor) -> Tensor:
        """Φᵀ u = L⁻¹ (K_ZX u) given ``kt`` = K_ZX u (M, C)."""
        return torch.linalg.solve_triangular(self.L, kt, upper=False)


class _Preconditioner:
    """B⁻¹ with B = d̄ LᵀL/M + λI = A Aᵀ; refactorised when d̄ moves by more than 3×."""

    def __init__(self, factor: NystromFactor, lam: float):
        self.factor, self.lam, self.dbar, self.A = factor, lam, None, None

    def update(self, dbar: float) -> None:
        dbar = max(dbar, 1e-12)
        if self.dbar is not None and 1 / 3 <= dbar / self.dbar <= 3:
            return
        M = self.factor.L.shape[0]
        eye = torch.eye(M, dtype=self.factor.L.dtype, device=self.factor.L.device)
        self.A = torch.linalg.cholesky(dbar * self.factor.LtL / M + self.lam * eye)
        self.dbar = dbar

    def __call__(self, v: Tensor) -> Tensor:
        w = torch.linalg.solve_triangular(self.A, v, upper=False)
        return torch.linalg.solve_triangular(self.A.T, w, upper=True)


@dataclass
class _State:
    """An iterate: β (M, C), c = L⁻ᵀβ, f = K_XZ c (n, C), α = −ℓ'(f) (n, C), its gradient and gap."""
    beta: Tensor
    c: Tensor
    f: Tensor
    alpha: Tensor
    grad: Tensor
    primal: float
    gap: float


class NystromSolver:
    """Newton–PCG on P(β) (module doc) over :class:`CentreRows` ``rows`` and :class:`NystromFactor`.

    With a ``cluster`` of several ranks, ``rows`` and ``Y`` (n_local, C) are this rank's shard of the
    n training rows, and every sum over rows (gradient, Hessian products, gap, primal, line-search
    slopes, mean curvature) is reduced over the ranks; the M-sized iterates are replicated."""

    CURVATURE_ROWS = 4096       # d̄ is the mean curvature over the first rows (global row numbers)

    def __init__(self, rows: CentreRows, factor: NystromFactor, Y: Tensor, lam: float,
                 cluster: Cluster | None = None, n: int | None = None):
        self.rows, self.factor, self.Y, self.lam = rows, factor, Y, lam
        self.cluster = cluster or Cluster()
        self.n = int(n) if n is not None else Y.shape[0]
        self.start = self.cluster.shard(self.n).start if self.cluster.distributed else 0

    def mean_curvature(self, loss: Loss, f: Tensor) -> float:
        """d̄: the mean diagonal of the loss Hessian in f over the first :attr:`CURVATURE_ROWS` rows."""
        take = max(0, min(self.Y.shape[0], self.CURVATURE_ROWS - self.start))
        Yr, fr = self.Y[:take], f[:take]
        sums = []
        for c in range(self.Y.shape[1]):
            e = torch.zeros_like(fr)
            e[:, c] = 1.0
            sums.append(float(loss.hvp(Yr, fr, e)[:, c].sum()))
        *sums, count = self.cluster.sum_floats(*sums, float(take))
        return max(sum(sums) / max(count, 1.0) / self.Y.shape[1], 0.0)

    def state(self, beta: Tensor, smooth: Loss, certify: Loss) -> _State:
        """One pass: f = K_XZ c, α = −ℓ'_smooth(f) (feasible for ``certify``), ∇P_smooth(β) and the
        ``certify`` loss's gap G(β, α) and primal."""
        c = self.factor.c_of(beta)
        n, lam = self.n, self.lam
        f = torch.empty_like(self.Y)
        kta = torch.zeros_like(beta)
        for sl, t in self.rows.tiles():
            f[sl] = t @ c
            kta += tmul(t, smooth.optimal_alpha(self.Y[sl], f[sl]))
        alpha = smooth.optimal_alpha(self.Y, f)
        grad = lam * beta - self.factor.phi_t(self.cluster.sum(kta)) / n      # ∇_β P_smooth = λβ − Φᵀα/n
        # certify's gap at (β, α): its Fenchel–Young terms plus 1/(2λ) ‖λβ − Φᵀα/n‖² (the same vector)
        fy, value = self.cluster.sum_floats(float(certify.fenchel_young(self.Y, f, alpha).clamp_min(0).sum()),
                                            float(certify.value(self.Y, f).sum()))
        gap = fy / n + float((grad * grad).sum()) / (2 * lam)
        primal = value / n + 0.5 * lam * float((beta * beta).sum())
        return _State(beta, c, f, alpha, grad, primal, gap)

    def hess(self, loss: Loss, D: Tensor, v: Tensor) -> Tensor:
        """(ΦᵀDΦ/n + λI) v for v (M, C), D the loss Hessian's per-row data (``loss.curvature``)."""
        u = self.factor.c_of(v)
        acc = torch.zeros_like(v)
        for sl, t in self.rows.tiles():
            acc += tmul(t, loss.apply_curvature(D[sl], t @ u))
        return self.factor.phi_t(self.cluster.sum(acc)) / self.n + self.lam * v

    def pcg(self, loss: Loss, f: Tensor, b: Tensor, precond: _Preconditioner, eta: float, max_iter: int
            ) -> tuple[Tensor, int]:
        """Solve H d = b (H the Hessian at scores f) by preconditioned CG to relative residual ``eta``
        (B-norm)."""
        D = loss.curvature(self.Y, f)
        d = torch.zeros_like(b)
        r = b.clone()
        z = precond(r)
        p = z.clone()
        rz = float((r * z).sum())
        rz0 = rz
        it = 0
        for it in range(1, max_iter + 1):
            if rz <= 0 or rz <= eta ** 2 * rz0:
                it -= 1
                break
            Hp = self.hess(loss, D, p)
            pHp = float((p * Hp).sum())
            if not pHp > 0:
                break
            a = rz / pHp
            d += a * p
            r -= a * Hp
            z = precond(r)
            rz_new = float((r * z).sum())
            p = z + (rz_new / rz) * p
            rz = rz_new
        return d, it

    def line_search(self, loss: Loss, s: _State, d: Tensor) -> tuple[Tensor, float]:
        """Minimise the convex φ(t) = P(β + t d) over t ≥ 0 (one pass for Δf = Φd, then O(n·C) per
        trial): bracket the root of φ' by doubling from t = 1, then bisect it. Exact steps matter for
        the piecewise-quadratic smoothed hinge, where backtracking keeps overshooting the active set.
        Returns (the step t·d, t)."""
        df = self.rows.times(self.factor.c_of(d))
        lam, Y, f = self.lam, self.Y, s.f
        bd, dd = float((s.beta * d).sum()), float((d * d).sum())

        def slope(t: float) -> float:           # φ'(t) = mean_i ⟨ℓ'(f_i + tΔf_i), Δf_i⟩ + λ(βᵀd + t dᵀd)
            local = float((-loss.optimal_alpha(Y, f + t * df) * df).sum())
            return self.cluster.sum_floats(local)[0] / self.n + lam * (bd + t * dd)

        if not slope(0.0) < 0:
            return torch.zeros_like(d), 0.0
        lo, hi = 0.0, 1.0
        while slope(hi) < 0 and hi < 2.0 ** 20:
            lo, hi = hi, 2 * hi
        if abs(slope(1.0)) <= 1e-12 * abs(slope(0.0)):      # the full Newton step is (numerically) exact
            return d, 1.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if slope(mid) < 0:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-6 * hi:
                break
        t = 0.5 * (lo + hi)
        return t * d, t


def solve_nystrom(solver: NystromSolver, loss: Loss, tol: float, max_iter: int, checkpoint: Checkpoint = None
                  ) -> Generator[TeacherProgress, None, tuple[_State, DualSolution]]:
    """Newton–PCG to relative gap ``tol`` of ``loss`` (hinge: through Huber smoothings of shrinking
    width). Yields :class:`TeacherProgress` at every certificate; returns the best certified iterate
    and its :class:`DualSolution` (α feasible for ``loss``, z = f*(X))."""
    t0 = time.perf_counter()
    lam = solver.lam
    mu = HINGE_MU0 if not loss.smooth else None
    smooth = SmoothedHingeLoss(mu) if mu is not None else loss
    precond = _Preconditioner(solver.factor, lam)
    beta = torch.zeros((solver.factor.L.shape[0], solver.Y.shape[1]), dtype=solver.Y.dtype, device=solver.Y.device)
    s = solver.state(beta, smooth, loss)
    best, total_cg = s, 0
    it = 0
    for it in range(max_iter + 1):
        rel = s.gap / max(abs(s.primal), 1e-300)
        yield TeacherProgress(it, s.gap, rel, time.perf_counter() - t0)
        if s.gap < best.gap:
            best = s
        if rel <= tol or it == max_iter:
            break
        if checkpoint is not None:
            checkpoint()
        if mu is not None:
            # the smoothed problem is (nearly) solved when its own gradient gap is far below the hinge gap
            if float((s.grad * s.grad).sum()) / (2 * lam) <= 0.01 * s.gap and mu > 1e-12:
                mu *= HINGE_MU_SHRINK
                smooth = SmoothedHingeLoss(mu)
                s = solver.state(s.beta, smooth, loss)
                continue
        precond.update(solver.mean_curvature(smooth, s.f))
        s_rel = float((s.grad * s.grad).sum()) / (2 * lam) / max(abs(s.primal), 1e-300)
        d, n_cg = solver.pcg(smooth, s.f, -s.grad, precond, eta=min(0.1, math.sqrt(max(s_rel, 0.0))), max_iter=PCG_MAX_ITER)
        total_cg += n_cg
        if not float((d * s.grad).sum()) < 0:
            break
        step, _ = solver.line_search(smooth, s, d)
        s = solver.state(s.beta + step, smooth, loss)
    if s.gap < best.gap:
        best = s
    primal = best.primal
    sol = DualSolution(best.alpha, best.f, primal, primal - best.gap, best.gap, it, time.perf_counter() - t0,
                       f"nyström newton-pcg ({it} Newton, {total_cg} CG iterations, {solver.rows.passes} passes"
                       f"{', hinge via Huber smoothing' if mu is not None else ''})")
    return best, sol
