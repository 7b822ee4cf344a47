"""The teacher: the kernel model trained once on the full real data (math doc §4.1).

Two kinds, one interface (f*(x̃), ‖w*‖², k(x̃, x̃) for the step, the certificate and the export):

- exact (:func:`fit_teacher`): represented by its feasible dual α* (only the rows with α* ≠ 0 are
  kept: the support vectors for hinge) or, for explicit-feature kernels, by the explicit weights
  w* = Φᵀ α* / (λ n) (p, C), so that each distillation step costs O(m·p) independent of n;
- Nyström (:func:`fit_nystrom_teacher`, engine.nystrom): w* = Σ_j c_j φ(z_j) over M centres, the
  full-data minimiser over their span; a step costs O(m·M) kernel entries, independent of n.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Generator

import torch

from engine.cluster import Cluster
from engine.events import Event, Progress, TeacherProgress
from engine.kernels import Kernel
from engine.losses import Loss
from engine.nystrom import CentreRows, NystromFactor, NystromSolver, select_centres, solve_nystrom
from engine.operators import build_operator_iter
from engine.solver import DualSolution, cd_hinge, solve_iter
from engine.tensors import ROW_TILE, tiled

Tensor = torch.Tensor


@dataclass
class Teacher:
    """f*(x) = (1/(λn)) Σ_i α*_i k(x_i, x) = Σ_i coef_i k(x_i, x), coef = α*/(λn).

    ``x``: (n_sv, …) support rows; ``coef``: (n_sv, C); ``weights``: (p, C) for explicit kernels
    (then ``x``/``coef`` are empty); ``w_norm2`` = ‖w*‖² (float64); ``solution``: the certified solve.
    """
    kernel: Kernel
    loss: Loss
    lam: float
    n: int
    w_norm2: float
    solution: DualSolution
    x: Tensor | None = None
    coef: Tensor | None = None
    weights: Tensor | None = None
    kind: str = "exact"                  # "exact" or "nystrom"
    info: dict = field(default_factory=dict)    # Nyström: centres, jitter, selection, cached, passes
    _cast: dict = field(default_factory=dict, repr=False)

    @functools.cached_property
    def coef_t(self) -> Tensor:
        """coefᵀ, (C, n_sv), contiguous: the DGKIP step's Z = K coef as K (coefᵀ)ᵀ and its gradient's
        ∂G/∂Z coefᵀ read this row-major copy (m = 100, n_sv = 2,000, C = 10, one thread: Z took 84 µs
        against 263 µs from coef, interleaved, engine.gap_step)."""
        return self.coef.T.contiguous()

    @property
    def n_support(self) -> int:
        """Training points with α*_i ≠ 0 (all ranks together for a sharded teacher)."""
        if "n_support" in self.info:
            return int(self.info["n_support"])
        return int((self.solution.alpha != 0).any(1).sum())

    def cast(self, dtype: torch.dtype, device: torch.device | str) -> "Teacher":
        """A view of this teacher in another dtype/device (cached; used by the float32 step loop)."""
        key = (dtype, str(device))
        if key not in self._cast:
            conv = (lambda t: None if t is None else t.to(device=device, dtype=dtype))
            self._cast[key] = Teacher(self.kernel, self.loss, self.lam, self.n, self.w_norm2, self.solution,
                                      conv(self.x), conv(self.coef), conv(self.weights), self.kind, self.info)
        return self._cast[key]

    def scores(self, x: Tensor) -> Tensor:
        """f*(x): (m, C) in x's dtype; differentiable in x."""
        if self.weights is not None:
            return self.kernel.features(x) @ self.weights
        return self.kernel(x, self.x).matmul(self.coef)

    def scores_and_gram(self, x: Tensor, features: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(f*(x) (m, C), k(x, x) (m, m)) for one distillation step; differentiable in x. Explicit
        kernels compute φ(x) once for both (the step's dominant cost with rf-conv: half the time), or
        take it as ``features`` (m, p) when the caller needs it too."""
        if self.weights is not None:
            f = self.kernel.features(x) if features is None else features
            return f @ self.weights, f @ f.T
        return self.scores(x), self.kernel(x)

    @torch.no_grad()
    def scores_tiled(self, x: Tensor, rows: int = ROW_TILE) -> Tensor:
        """f*(x) without gradients, in row tiles (large test sets)."""
        return tiled(self.scores, x, rows)


def fit_teacher(kernel: Kernel, loss: Loss, lam: float, x: Tensor, Y: Tensor, *, tol: float = 1e-6,
                max_iter: int = 200, budget_bytes: int = 4 * 2**30,
                checkpoint: Callable[[], None] | None = None) -> Generator[Progress | TeacherProgress, None, Teacher]:
    """Solve the full-data problem on ``x`` (n, …) with labels ``Y`` (n, C) in x's dtype (float64 for
    certificates). Generator: yields :class:`TeacherProgress`, returns the :class:`Teacher`.
    Raises :class:`engine.operators.ResourceError` when the kernel operator exceeds ``budget_bytes``."""
    n = x.shape[0]
    # hinge on the CPU: working-set coordinate descent (engine.hinge_cd) on K = ΦΦᵀ when it fits, far ahead of FISTA on Φ
    # (previous greedy descent, CIFAR-10, 10,000 images, λ = 1e-4: relative gap 1e-3 after 20 s of descent; FISTA at 1e-5: 8 % after 200 s)
    op = yield from build_operator_iter(kernel, x, budget_bytes, dense_if_fits=cd_hinge(loss, x.device, x.dtype),
                                        checkpoint=checkpoint)
    sol = yield from solve_iter(op.matvec, Y, loss, lam, tol=tol, max_iter=max_iter, checkpoint=checkpoint,
                                dense=op.dense)
    coef = sol.alpha / (lam * n)
    w_norm2 = float((coef * sol.z).sum())            # ‖w*‖² = αᵀKα/(λn)² = Σ coef ∘ z
    if op.features is not None:      # explicit kernels (even when solved on ΦΦᵀ): steps cost O(m·p), not O(m·n)
        weights = op.features.T @ coef
        del op
        return Teacher(kernel, loss, lam, n, w_norm2, sol, weights=weights)
    keep = (sol.alpha != 0).any(1)
    del op
    return Teacher(kernel, loss, lam, n, w_norm2, sol, x=x[keep], coef=coef[keep])


def fit_nystrom_teacher(kernel: Kernel, loss: Loss, lam: float, x: Tensor, Y: Tensor, labels: Tensor, *,
                        centres: int, selection: str = "uniform", seed: int = 0, cache: bool = True,
                        tol: float = 1e-6, max_iter: int = 200, checkpoint: Callable[[], None] | None = None,
                        cluster: Cluster | None = None) -> Generator[Event, None, Teacher]:
    """The Nyström teacher on the n training images with class indices ``labels`` (n,): ``x``
    (n_local, …) and ``Y`` (n_local, C) (float64 for certificates) are this rank's rows
    ``cluster.shard(n)`` (all n rows for one process). ``centres`` = M centres chosen by ``selection``
    ("uniform", "kmeans++"), K(X, Z) cached when ``cache`` (n_local·M entries) else recomputed per
    pass. Yields :class:`engine.events.Progress` (K(X, Z) tiles) and :class:`TeacherProgress`; returns
    the :class:`Teacher` (kind "nystrom"; explicit kernels keep w* = φ(Z)ᵀc as ``weights``), the same
    on every rank. Its solution's gap is that of the feature problem Φ = K_XZ L⁻ᵀ (engine.nystrom);
    ``solution.alpha``/``z`` hold this rank's rows."""
    cluster = cluster or Cluster()
    n = labels.shape[0]
    with torch.no_grad():
        idx = select_centres(x, labels, centres, selection, seed, kernel=kernel, checkpoint=checkpoint,
                             cluster=cluster)
        z = cluster.rows(x, n, idx)
        kzz = kernel(z)
        factor = NystromFactor.of(kzz)
    rows = CentreRows(kernel, x, z, cache=cache, checkpoint=checkpoint)
    yield from rows.build()
    solver = NystromSolver(rows, factor, Y, lam, cluster=cluster, n=n)
    with torch.no_grad():
        best, sol = yield from solve_nystrom(solver, loss, tol, max_iter, checkpoint)
        c = best.c
        w_norm2 = float((c * (kzz @ c)).sum())            # ‖w*‖² = cᵀ K_ZZ c, the exact kernel's norm
        support = cluster.sum_floats(float((sol.alpha != 0).any(1).sum()))[0]
    info = {"centres": int(z.shape[0]), "jitter": factor.eps, "selection": selection, "cached": cache,
            "passes": rows.passes, "n_support": int(support), "ranks": cluster.world}
    if kernel.explicit:
        weights = rows.z_features.T @ c
        return Teacher(kernel, loss, lam, n, w_norm2, sol, weights=weights, kind="nystrom", info=info)
    return Teacher(kernel, loss, lam, n, w_norm2, sol, x=z, coef=c, kind="nystrom", info=info)
