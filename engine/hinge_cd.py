"""Working-set dual coordinate descent for the mean-form hinge problem on a dense kernel matrix.

Per column c (one-vs-rest, labels y = ±1) the dual of the mean-form problem (math doc §2–3) is, in
β = α y ∈ [0, 1]^N and up to the factor 1/N,

    min_β  h(β) = (s/2) βᵀ Q β − 1ᵀβ,      Q = diag(y) K diag(y),   s = 1/(λN),

with gradient g = y ∘ z − 1 where z = K α s are the scores of w(α). There is no bias, hence no
equality constraint: the box decouples and any block of coordinates can be optimised alone (unlike
LIBSVM's pairs). Each outer iteration

1. takes, per column, the next ``q`` coordinates that violate the optimality conditions (projected
   gradient ≠ 0) in a fixed random permutation, cyclically (liblinear's random order, by blocks);
2. solves the q-coordinate sub-problem on K[W, W] by Gauss–Seidel sweeps of exact scalar steps, each
   an O(q) row update (not O(N));
3. updates every score with BLAS products K[U, :]ᵀ Δ over the union U of the columns' sets (in
   blocks of q rows: q × N entries alive at most).

Measured on MNIST 3 vs 5 (n = 11,552, ntk-fc depth 1, λ = 1e-3) to a relative gap of 1e-9, one
column: 45 outer iterations with q = 256 (0.8 s), against about 320 when each block took the q most
violating coordinates (pg²/K_ii, as greedy SMO would), and q = 128 or 512 slower than 256; a
projected-Newton sub-solver (Cholesky on the free coordinates) cost more per block than the sweeps.

The running scores accumulate rounding; the caller (engine.solver) certifies with an exact product
K α and never reports a gap from them.
"""
from __future__ import annotations

import numpy as np

WORKING_SET = 256          # coordinates per column and outer iteration (the sub-problem's size)
SUB_SWEEPS = 10            # Gauss–Seidel sweeps per sub-problem at most


def _projected(g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Projected gradient of a minimisation over [0, 1]: zero where a bound blocks the descent."""
    return np.where(b <= 0.0, np.minimum(g, 0.0), np.where(b >= 1.0, np.maximum(g, 0.0), g))


def _sweep(H: np.ndarray, r: np.ndarray, x: np.ndarray, order: np.ndarray) -> None:
    """One Gauss–Seidel pass of exact coordinate minimisation over ``order`` (in place: x, r = ∇)."""
    for i in order:
        hii = H[i, i]
        if hii <= 0.0:
            new = 0.0 if r[i] > 0 else 1.0 if r[i] < 0 else x[i]
        else:
            new = min(1.0, max(0.0, x[i] - r[i] / hii))
        dx = new - x[i]
        if dx != 0.0:
            x[i] = new
            r += H[i] * dx                   # H symmetric: a contiguous row


def box_cd(H: np.ndarray, g: np.ndarray, b: np.ndarray, tol: float, max_sweeps: int = SUB_SWEEPS) -> np.ndarray:
    """Approximately argmin over 0 ≤ x ≤ 1 of gᵀ(x − b) + ½ (x − b)ᵀ H (x − b) (H symmetric positive
    semi-definite), from the feasible ``b``: Gauss–Seidel sweeps of exact scalar minimisation over the
    coordinates whose projected gradient exceeds ``tol``, most violating first, until none does or
    ``max_sweeps``. Every step decreases the objective. Returns x."""
    x = b.astype(np.float64, copy=True)
    r = g.astype(np.float64, copy=True)
    for _ in range(max_sweeps):
        pg = np.abs(_projected(r, x))
        order = np.flatnonzero(pg > tol)
        if order.size == 0:
            break
        _sweep(H, r, x, order[np.argsort(-pg[order])].tolist())
    return x


def row_product(K: np.ndarray, rows: np.ndarray, V: np.ndarray, block: int | None = None) -> np.ndarray:
    """K[:, rows] @ V for a symmetric K, as Σ K[rows_b]ᵀ V_b over blocks of ``block`` (default
    ``WORKING_SET``) rows: contiguous row copies, at most block × N entries alive (the memory the run
    estimate plans for)."""
    block = block or WORKING_SET
    out = np.zeros((K.shape[0], V.shape[1]))
    for i in range(0, rows.size, block):
        out += K[rows[i:i + block]].T @ V[i:i + block]
    return out


class WorkingSetHinge:
    """State of the working-set method on a dense float64 kernel ``K`` (N, N) with labels ``Y``
    (N, C) ±1 and dual variables β = α y ∈ [0, 1] (``beta``, (N, C)). ``z`` are the running scores."""

    def __init__(self, K: np.ndarray, Y: np.ndarray, lam: float, beta0: np.ndarray | None = None,
                 q: int | None = None):
        self.K, self.Y = K, np.ascontiguousarray(Y, dtype=np.float64)
        self.N, self.C = self.Y.shape
        self.s = 1.0 / (lam * self.N)
        self.q = int(min(max(WORKING_SET if q is None else q, 1), self.N))
        self.beta = np.zeros_like(self.Y) if beta0 is None else np.clip(beta0, 0.0, 1.0).astype(np.float64)
        self.perm = np.random.default_rng(0).permutation(self.N)
        self.cursor = [0] * self.C
        self.updates = 0            # coordinates passed to sub-problems, summed over columns
        self.outer = 0
        self.set_scores(self.K @ self.alpha if beta0 is not None and beta0.any() else np.zeros_like(self.Y))

    @property
    def alpha(self) -> np.ndarray:
        return self.beta * self.Y

    def set_scores(self, KA: np.ndarray) -> None:
        """Replace the running scores by those of an exact product KA = K α."""
        self.z = KA * self.s

    def gradient(self) -> np.ndarray:
        return self.Y * self.z - 1.0

    def running_gap(self) -> tuple[float, float]:
        """(gap, primal) from the running scores: an estimate for deciding when to certify, never a
        certificate."""
        yz = self.Y * self.z
        hinge = np.maximum(1.0 - yz, 0.0).sum() / self.N
        fy = (np.maximum(1.0 - yz, 0.0) - self.beta + self.beta * yz).sum() / self.N
        quad = float((self.alpha * self.z).sum()) / self.N          # λ‖w‖² = αᵀKα/(λN²) = Σ α z / N
        return max(float(fy), 0.0), float(hinge) + 0.5 * quad

    def step(self) -> float:
        """One outer iteration; returns the largest projected gradient before it (0: optimal)."""
        g = self.gradient()
        pg = _projected(g, self.beta)
        worst = float(np.abs(pg).max(initial=0.0))
        if worst == 0.0:
            return 0.0
        sets = []
        for c in range(self.C):
            col = pg[:, c] != 0.0
            if self.q < self.N:      # the next q violating coordinates of the permutation, from the cursor
                vp = np.flatnonzero(np.roll(col[self.perm], -self.cursor[c]))[:self.q]
                W = self.perm[(vp + self.cursor[c]) % self.N]
                if vp.size:
                    self.cursor[c] = int((vp[-1] + 1 + self.cursor[c]) % self.N)
            else:
                W = np.flatnonzero(col)
            sets.append(np.sort(W))
        U = np.unique(np.concatenate(sets))
        if U.size == 0:
            return 0.0
        delta = np.zeros((U.size, self.C))
        for c, W in enumerate(sets):
            if W.size == 0:
                continue
            yW = self.Y[W, c]
            H = (self.s * self.K[np.ix_(W, W)]) * yW[:, None] * yW[None, :]
            b = self.beta[W, c]
            sub_tol = max(1e-3 * float(np.abs(pg[W, c]).max()), 1e-14)
            new = box_cd(H, g[W, c], b, sub_tol)
            delta[np.searchsorted(U, W), c] = (new - b) * yW
            self.beta[W, c] = new
            self.updates += W.size
        self.z += row_product(self.K, U, delta) * self.s
        self.outer += 1
        return worst

