"""Certificates of a distilled set (math doc §4.3 and §5), computed in float64 with feasible duals.

Given the teacher f* and synthetic inputs x̃ (m, …) with labels Ỹ (m, C):

- solve the m-point problem exactly (the model trained on S, w_S, and its dual α_S, the feasible α̃
  that minimises G_S for these x̃);
- G_S = (1/m) Σ_j FY_j(f*(x̃_j), α_S,j) + λ/2 ‖w* − w(α_S)‖²  and  r = √(2 G_S / λ) ≥ ‖w_S* − w*‖;
- on test points: teacher top class certified where f*_top − max_{c≠top} f*_c > √2 · r · √k(x, x);
  certified consistency, and bounds on the test error of the exact model trained on S;
- what the bound does not say, measured: the agreement of the model trained on S with the teacher
  (the fraction of test points where their top classes agree), the distance itself
  ‖w* − w(α_S)‖ = √(w_norm2 − 2/(λm)·Σ α∘Z + αᵀK_SSα/(λm)²) (the kernel-matching part without its
  rounding allowance, divided by λ/2), and the radius at which half the test points would be certified.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engine.losses import Loss
from engine.solver import DualSolution, solve_dense
from engine.teacher import Teacher
from engine.tensors import ROW_TILE, tiled

Tensor = torch.Tensor
_EPS64 = 2.2e-16


@dataclass
class GapParts:
    fenchel_young: float
    kernel_match: float

    @property
    def gap(self) -> float:
        return self.fenchel_young + self.kernel_match


def gap_parts(loss: Loss, lam: float, w_norm2: float, Z: Tensor, Y: Tensor, A: Tensor, Kss: Tensor,
              certified: bool = True) -> GapParts:
    """G_S at teacher scores Z = f*(x̃) (m, C) and feasible α̃ = A (m, C); K_SS (m, m).

    With ``certified`` the kernel-matching part (a difference of large terms) is rounded *up* by a
    floating-point error allowance, so the reported gap stays an upper bound."""
    return gap_parts_quad(loss, lam, w_norm2, Z, Y, A, float((A * (Kss @ A)).sum()), certified)


def gap_terms(loss: Loss, lam: float, w_norm2: float, Z: Tensor, Y: Tensor, A: Tensor, Kss: Tensor
              ) -> tuple[Tensor, Tensor]:
    """G_S's two parts as differentiable scalars in Z's dtype — (mean Fenchel-Young term, kernel-matching
    term λ/2 ‖w* − w(α̃)‖²) — without the rounding allowance of :func:`gap_parts` (a distillation step
    minimises their sum; the certificate reports :func:`gap_parts`). Shapes as in :func:`gap_parts`."""
    m = Y.shape[0]
    fy = loss.fenchel_young(Y, Z, A).mean()
    km = 0.5 * lam * (w_norm2 - 2.0 / (lam * m) * (A * Z).sum() + (A * (Kss @ A)).sum() / (lam * m) ** 2)
    return fy, km


def gap_parts_quad(loss: Loss, lam: float, w_norm2: float, Z: Tensor, Y: Tensor, A: Tensor, AKA: float,
                   certified: bool = True) -> GapParts:
    """:func:`gap_parts` given the quadratic form ``AKA`` = Σ_c α_cᵀ K α_c instead of the kernel matrix
    (the exact certificate computes it over n points in tiles)."""
    m = Y.shape[0]
    fy = float(loss.fenchel_young(Y, Z, A).mean())
    cross = 2.0 / (lam * m) * float((A * Z).sum())
    quad = AKA / (lam * m) ** 2
    km = w_norm2 - cross + quad
    if certified:
        km = max(km, 0.0) + 64 * _EPS64 * (abs(w_norm2) + abs(cross) + abs(quad))
    return GapParts(max(fy, 0.0), 0.5 * lam * km)


def radius(gap: float, lam: float) -> float:
    return math.sqrt(2.0 * max(gap, 0.0) / lam)


@dataclass
class TestPoints:
    """Preprocessed test inputs ``x`` (n_t, …) float64, labels ``y`` (n_t,) and, for explicit kernels,
    their features φ(x) (n_t, p), computed once: every prediction then uses the very same features,
    and a ConvNet feature kernel does not run n_t images through its networks again each time."""
    x: Tensor
    y: Tensor
    features: Tensor | None = None

    @classmethod
    @torch.no_grad()
    def build(cls, kernel, x: Tensor, y: Tensor, rows: int = ROW_TILE) -> "TestPoints":
        if not kernel.explicit:
            return cls(x, y)
        return cls(x, y, tiled(kernel.features, x, rows))

    @torch.no_grad()
    def predict(self, kernel, xs: Tensor, alpha: Tensor, lam: float, xs_features: Tensor | None = None) -> Tensor:
        """Scores (n_t, C) of the model w(α) = (1/(λm)) Σ_j α_j φ(xs_j) trained on xs (m, …);
        ``xs_features``: φ(xs) (m, p) when the caller has it already."""
        if self.features is None:
            return predict(kernel, xs, alpha, lam, self.x)
        fs = kernel.features(xs) if xs_features is None else xs_features
        return self.features @ (fs.T @ alpha) / (lam * xs.shape[0])

    def accuracy(self, kernel, xs: Tensor, alpha: Tensor, lam: float) -> float:
        return accuracy(self.predict(kernel, xs, alpha, lam), self.y)


@dataclass
class TestSet:
    """Test points with the teacher's scores (n_t, C) and k(x, x) (n_t,), from the points' own
    features when the kernel has them (margins and predictions then agree to the last bit)."""
    points: TestPoints
    teacher_scores: Tensor
    kdiag: Tensor

    @classmethod
    @torch.no_grad()
    def build(cls, teacher: Teacher, x: Tensor, y: Tensor) -> "TestSet":
        points = TestPoints.build(teacher.kernel, x, y)
        phi = points.features                  # explicit kernels: the teacher is w* (fit_teacher keeps it)
        if phi is None:
            return cls(points, teacher.scores_tiled(x), teacher.kernel.diag(x))
        return cls(points, phi @ teacher.weights, (phi * phi).sum(1))

    @property
    def y(self) -> Tensor:
        return self.points.y

    @property
    def teacher_accuracy(self) -> float:
        return accuracy(self.teacher_scores, self.y)


TRAIN_TOL, TRAIN_MAX_ITER = 1e-9, 100     # the m-point solve of the model trained on S


def train_on(kernel, loss: Loss, lam: float, xs: Tensor, Ys: Tensor, tol: float = TRAIN_TOL,
             max_iter: int = TRAIN_MAX_ITER, alpha0: Tensor | None = None) -> tuple[DualSolution, Tensor]:
    """The same-loss kernel model trained on (xs, Ys): its certified solution and K_SS."""
    Kss = kernel(xs)
    return solve_dense(Kss, Ys, loss, lam, tol=tol, max_iter=max_iter, alpha0=alpha0), Kss


def predict(kernel, xs: Tensor, alpha: Tensor, lam: float, x: Tensor, rows: int = ROW_TILE) -> Tensor:
    """Scores (n_x, C) of the model w(α) = (1/(λm)) Σ_j α_j φ(xs_j)."""
    m = xs.shape[0]
    with torch.no_grad():
        return tiled(lambda t: kernel(t, xs) @ alpha, x, rows) / (lam * m)


def predicted_classes(scores: Tensor) -> Tensor:
    """argmax over the columns; one column (a binary loss on two classes): class 1 where the score is
    positive, else class 0 — the argmax of the mirrored pair [−z, z], ties included."""
    if scores.shape[1] == 1:
        return (scores[:, 0] > 0).long()
    return scores.argmax(1)


def top_margin(scores: Tensor) -> tuple[Tensor, Tensor, float]:
    """(margin, predicted class, factor): the gap between the two largest scores and the factor f with
    |margin change| ≤ f·‖w_S − w*‖·√k(x, x) — √2 for two columns' difference (each moves by at most
    ‖Δw_c‖√k, and ‖Δw_a‖ + ‖Δw_b‖ ≤ √2 ‖ΔW‖_F); one column: |z| and 1 (|Δz| ≤ ‖Δw‖√k)."""
    if scores.shape[1] == 1:
        return scores[:, 0].abs(), predicted_classes(scores), 1.0
    top2 = scores.topk(2, dim=1)
    return top2.values[:, 0] - top2.values[:, 1], top2.indices[:, 0], math.sqrt(2.0)


def accuracy(scores: Tensor, y: Tensor) -> float:
    return float((predicted_classes(scores) == y).double().mean())


MAX_EVAL_TEST = 10_000      # test points used for accuracies and certificates (seeded stratified sample)


@dataclass
class Certificate:
    gap: float
    fenchel_young: float
    kernel_match: float
    radius: float
    distilled_accuracy: float
    certified_consistency: float
    error_lower: float
    error_upper: float
    alpha: Tensor          # α_S (m, C), feasible
    student_gap: float     # certified gap of the m-point solve itself
    agreement: float = float("nan")        # fraction of test points where argmax f_S = argmax f*
    distance: float = float("nan")         # ‖w* − w(α_S)‖ in the RKHS (≤ radius; both solves' tolerances apart)
    radius_for_half: float = float("nan")  # radius below which half the test predictions would be certified


@torch.no_grad()
def certify(teacher: Teacher, xs: Tensor, Ys: Tensor, test: TestSet, alpha0: Tensor | None = None) -> Certificate:
    """Train on S, bound ‖w_S − w*‖, and evaluate certificates on the test set (all float64)."""
    kernel, loss, lam = teacher.kernel, teacher.loss, teacher.lam
    fs = kernel.features(xs) if test.points.features is not None else None    # one φ(x̃) for everything:
    Z, Kss = teacher.scores_and_gram(xs, fs)   # G_S is exact for the features used
    sol = solve_dense(Kss, Ys, loss, lam, tol=TRAIN_TOL, max_iter=TRAIN_MAX_ITER, alpha0=alpha0)
    parts = gap_parts(loss, lam, teacher.w_norm2, Z, Ys, sol.alpha, Kss)
    r = radius(parts.gap, lam)
    scores = test.points.predict(kernel, xs, sol.alpha, lam, fs)
    margin, teacher_class, factor = top_margin(test.teacher_scores)
    scale = factor * test.kdiag.clamp_min(0).sqrt()
    certified = margin > r * scale
    teacher_right = teacher_class == test.y
    exact = gap_parts(loss, lam, teacher.w_norm2, Z, Ys, sol.alpha, Kss, certified=False)
    needed = margin / scale.clamp_min(torch.finfo(scale.dtype).tiny)     # per point: the largest certifying r
    return Certificate(
        gap=parts.gap, fenchel_young=parts.fenchel_young, kernel_match=parts.kernel_match, radius=r,
        distilled_accuracy=accuracy(scores, test.y),
        certified_consistency=float(certified.double().mean()),
        error_lower=float((certified & ~teacher_right).double().mean()),
        error_upper=float(1.0 - (certified & teacher_right).double().mean()),
        alpha=sol.alpha, student_gap=sol.gap,
        agreement=float((predicted_classes(scores) == teacher_class).double().mean()),
        distance=math.sqrt(max(2.0 * exact.kernel_match / lam, 0.0)),
        radius_for_half=float(needed.median()))
