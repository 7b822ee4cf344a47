"""Convex losses, their conjugates and feasible dual parameterisations (math doc §3).

Every loss works on label matrices ``Y`` (n, C) and margins/scores ``Z`` (n, C) and returns per-sample
values (n,) summed over the C outputs. Binary losses (logistic, hinge, squared hinge) act one-vs-rest
with ``Y`` in {−1, +1}; with β = α·y their dual feasible sets are boxes. With exactly two classes a
binary loss solves *one* column, y = +1 for class 1 and −1 for class 0 (the DGKIP paper's binary
setting; issue 17): the one-vs-rest pair would be that column and its mirror image (targets
[[1, −1], [−1, 1]]), which for a model without bias has W = [−w, w], so every primal, dual, gap and
Fenchel–Young term of the pair is exactly twice the one column's and every RKHS distance (and so the
radius √(2·gap/λ)) √2 times. Predictions are sign(score) → class 1 if positive, class 0 otherwise,
which is the pair's argmax (ties to class 0 in both). :meth:`Loss.expand_columns` writes a one-column
matrix back as the mirrored pair, the form exports and transfer read. Cross-entropy is natively
multi-class with ``Y`` a probability vector per row (one-hot or soft). Squared loss accepts any real
``Y`` (learnable label vectors).

Sign conventions (mean-form primal P(w) = (1/N) Σ ℓ(y_i, f(x_i)) + λ/2 ‖w‖²):

- ``conj_neg(Y, A)`` is ℓ*(−α), finite only for feasible α;
- ``optimal_alpha(Y, Z)`` is −∂ℓ/∂z (the dual variable that makes the Fenchel–Young term zero);
- ``fenchel_young(Y, Z, A)`` = ℓ(z) + ℓ*(−α) + αᵀz ≥ 0, zero iff α = −∂ℓ(z).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _xlogx(p: Tensor) -> Tensor:
    return torch.xlogy(p, p)


class Loss:
    name: str = "loss"
    smooth: bool = True            # twice differentiable (Newton teacher); hinge is not
    binary: bool = False           # one-vs-rest with labels ±1

    def columns(self, num_classes: int) -> int:
        """Columns of the label matrix: 1 for a binary loss on two classes, else ``num_classes``."""
        return 1 if self.binary and num_classes == 2 else num_classes

    def targets(self, labels: Tensor, num_classes: int, dtype=torch.float64) -> Tensor:
        """Label matrix (n, C) for integer class labels (n,); a binary loss on two classes: one column
        (n, 1), +1 for class 1 and −1 for class 0 (module docstring)."""
        if self.columns(num_classes) == 1:
            return (2 * labels.long() - 1).to(dtype).unsqueeze(1)
        onehot = F.one_hot(labels.long(), num_classes).to(dtype)
        return 2 * onehot - 1 if self.binary else onehot

    def expand_columns(self, M: Tensor, num_classes: int) -> Tensor:
        """A one-column binary matrix (targets, α, scores) as the equivalent mirrored one-vs-rest pair
        [−M, M] (n, 2); any other matrix unchanged."""
        if self.columns(num_classes) == 1 and M.shape[1] == 1:
            return torch.cat([-M, M], 1)
        return M

    def value(self, Y: Tensor, Z: Tensor) -> Tensor:
        raise NotImplementedError

    def conj_neg(self, Y: Tensor, A: Tensor) -> Tensor:
        raise NotImplementedError

    def alpha_from_param(self, Y: Tensor, R: Tensor) -> Tensor:
        """A feasible α for any real parameter matrix R (n, C)."""
        raise NotImplementedError

    def param_from_alpha(self, Y: Tensor, A: Tensor) -> Tensor:
        """A parameter R with alpha_from_param(Y, R) ≈ A (boundary values pulled slightly inside)."""
        raise NotImplementedError

    def optimal_alpha(self, Y: Tensor, Z: Tensor) -> Tensor:
        """The dual variable (n, C) that meets scores Z (n, C) with equality in Fenchel-Young:
        α = −∇ℓ(Z) for a smooth loss (engine.gap_step takes ∇ℓ from it), a subgradient's negative
        for the hinge."""
        raise NotImplementedError

    def project(self, Y: Tensor, A: Tensor) -> Tensor:
        """Euclidean-nearest feasible α (used by projected solvers)."""
        return A

    def hvp(self, Y: Tensor, Z: Tensor, V: Tensor) -> Tensor:
        """(Generalised) Hessian of ℓ in z applied row-wise to V (n, C)."""
        raise NotImplementedError

    def fenchel_young(self, Y: Tensor, Z: Tensor, A: Tensor) -> Tensor:
        return self.value(Y, Z) + self.conj_neg(Y, A) + (A * Z).sum(-1)

    def curvature(self, Y: Tensor, Z: Tensor) -> Tensor:
        """Per-row data D (n, C) of the Hessian at Z, so that ``apply_curvature(D[rows], V)`` equals
        ``hvp(Y[rows], Z[rows], V)`` without recomputing it (a Newton system's many products). Here the
        diagonal of a loss whose Hessian is diagonal (cross-entropy overrides both)."""
        return self.hvp(Y, Z, torch.ones_like(Z))

    def apply_curvature(self, D: Tensor, V: Tensor) -> Tensor:
        """H V for the Hessian whose data :meth:`curvature` returned, as a new tensor (callers scale
        it in place)."""
        return D * V


class SquaredLoss(Loss):
    """ℓ = ½ ‖y − z‖²; ℓ*(−α) = −αᵀy + ½‖α‖²; α free."""
    name = "squared"

    def value(self, Y, Z):
        return 0.5 * ((Y - Z) ** 2).sum(-1)

    def conj_neg(self, Y, A):
        return (-A * Y + 0.5 * A * A).sum(-1)

    def alpha_from_param(self, Y, R):
        return R

    def param_from_alpha(self, Y, A):
        return A.clone()

    def optimal_alpha(self, Y, Z):
        return Y - Z

    def hvp(self, Y, Z, V):
        return V


class _BoxBinaryLoss(Loss):
    """Shared parts of the one-vs-rest losses whose dual is β = α·y in [0, 1] (logistic, hinge)."""
    binary = True
    _edge = 1e-6

    def alpha_from_param(self, Y, R):
        return torch.sigmoid(R) * Y

    def param_from_alpha(self, Y, A):
        beta = (A * Y).clamp(self._edge, 1 - self._edge)
        return torch.log(beta) - torch.log1p(-beta)

    def project(self, Y, A):
        return (A * Y).clamp(0.0, 1.0) * Y


class LogisticLoss(_BoxBinaryLoss):
    """ℓ = log(1 + e^{−yz}); ℓ*(−α) = β log β + (1 − β) log(1 − β), β = αy ∈ [0, 1]."""
    name = "logistic"

    def value(self, Y, Z):
        return F.softplus(-Y * Z).sum(-1)

    def conj_neg(self, Y, A):
        beta = A * Y
        return (_xlogx(beta) + _xlogx(1 - beta)).sum(-1)

    def optimal_alpha(self, Y, Z):
        return torch.sigmoid(-Y * Z) * Y

    def hvp(self, Y, Z, V):
        s = torch.sigmoid(Y * Z)
        return s * (1 - s) * V


class HingeLoss(_BoxBinaryLoss):
    """ℓ = max(0, 1 − yz); ℓ*(−α) = −β, β = αy ∈ [0, 1]. Not smooth: the teacher uses a dual solver."""
    name = "hinge"
    smooth = False

    def value(self, Y, Z):
        return (1 - Y * Z).clamp_min(0).sum(-1)

    def conj_neg(self, Y, A):
        return -(A * Y).sum(-1)

    def optimal_alpha(self, Y, Z):
        return (Y * Z < 1).to(Z.dtype) * Y

    def hvp(self, Y, Z, V):
        raise TypeError("the hinge loss has no Hessian")


class SmoothedHingeLoss(_BoxBinaryLoss):
    """Huber-smoothed hinge of width μ (the Nyström teacher's route to hinge, engine.nystrom): with
    t = 1 − yz, ℓ = 0 (t ≤ 0), t²/(2μ) (0 < t < μ), t − μ/2 (t ≥ μ); ℓ*(−α) = −β + μβ²/2 with
    β = αy ∈ [0, 1] — the hinge's own feasible set, so its optimal α is a feasible hinge dual.
    Not in the registry: a solver device, not a loss users distil with."""
    name = "smoothed-hinge"

    def __init__(self, mu: float):
        self.mu = float(mu)

    def value(self, Y, Z):
        t = 1 - Y * Z
        return torch.where(t >= self.mu, t - 0.5 * self.mu, t.clamp_min(0) ** 2 / (2 * self.mu)).sum(-1)

    def conj_neg(self, Y, A):
        beta = A * Y
        return (-beta + 0.5 * self.mu * beta * beta).sum(-1)

    def optimal_alpha(self, Y, Z):
        return ((1 - Y * Z) / self.mu).clamp(0.0, 1.0) * Y

    def hvp(self, Y, Z, V):
        t = 1 - Y * Z
        return ((t > 0) & (t < self.mu)).to(Z.dtype) * V / self.mu


class SquaredHingeLoss(Loss):
    """ℓ = ½ max(0, 1 − yz)²; ℓ*(−α) = −β + ½β², β = αy ≥ 0."""
    name = "squared-hinge"
    binary = True

    def value(self, Y, Z):
        return 0.5 * ((1 - Y * Z).clamp_min(0) ** 2).sum(-1)

    def conj_neg(self, Y, A):
        beta = A * Y
        return (-beta + 0.5 * beta * beta).sum(-1)

    def alpha_from_param(self, Y, R):
        return F.softplus(R) * Y

    def param_from_alpha(self, Y, A):
        beta = (A * Y).clamp_min(1e-6)
        return beta + torch.log(-torch.expm1(-beta))        # softplus⁻¹

    def project(self, Y, A):
        return (A * Y).clamp_min(0.0) * Y

    def optimal_alpha(self, Y, Z):
        return (1 - Y * Z).clamp_min(0) * Y

    def hvp(self, Y, Z, V):
        return (Y * Z < 1).to(Z.dtype) * V


class CrossEntropyLoss(Loss):
    """ℓ = −yᵀz + log Σ_c e^{z_c}; ℓ*(−α) = Σ_c p_c log p_c with p = y − α in the simplex."""
    name = "cross-entropy"

    def value(self, Y, Z):
        # log Σ e^z = max z − max log softmax(z), both at the largest score, where log softmax lies in
        # [−log C, 0]: no cancellation (one column's z − log softmax(z) loses digits when that score is far
        # below the largest). log_softmax is one kernel where logsumexp is seven small ops: 10 × 10, one
        # thread, 24 against 38 µs
        return (Z.amax(-1) - torch.log_softmax(Z, dim=-1).amax(-1)) - (Y * Z).sum(-1)

    def conj_neg(self, Y, A):
        return _xlogx(Y - A).sum(-1)

    def alpha_from_param(self, Y, R):
        return Y - torch.softmax(R, dim=-1)

    def param_from_alpha(self, Y, A):
        return torch.log((Y - A).clamp_min(1e-12))

    def project(self, Y, A):
        return Y - _simplex_projection(Y - A)

    def optimal_alpha(self, Y, Z):
        return Y - torch.softmax(Z, dim=-1)

    def hvp(self, Y, Z, V):
        return self.apply_curvature(torch.softmax(Z, dim=-1), V)

    def curvature(self, Y, Z):
        return torch.softmax(Z, dim=-1)

    def apply_curvature(self, D, V):
        return D * V - D * (D * V).sum(-1, keepdim=True)


def _simplex_projection(P: Tensor) -> Tensor:
    """Row-wise Euclidean projection onto the probability simplex (Duchi et al. 2008)."""
    u, _ = torch.sort(P, dim=-1, descending=True)
    css = u.cumsum(-1) - 1
    k = torch.arange(1, P.shape[-1] + 1, device=P.device, dtype=P.dtype)
    cond = u - css / k > 0
    rho = cond.to(P.dtype).cumsum(-1).argmax(-1, keepdim=True)
    theta = css.gather(-1, rho) / (rho + 1).to(P.dtype)
    return (P - theta).clamp_min(0)


_LOSSES = {cls.name: cls for cls in (SquaredLoss, LogisticLoss, HingeLoss, SquaredHingeLoss, CrossEntropyLoss)}


def make_loss(name: str) -> Loss:
    if name not in _LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(_LOSSES)}")
    return _LOSSES[name]()


def loss_names() -> list[str]:
    return list(_LOSSES)
