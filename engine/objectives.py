"""The distillation objectives, one object per mode: each owns its step (the loss of the synthetic
images), its working data and its cost model, which the run (:mod:`engine.distill`) and the run plan
(:mod:`engine.plan`) both consult.

* :class:`DGKIPObjective` — the duality gap of the small problem at the teacher (math doc §4):
  G_S = mean FY(Ỹ, f*(x̃), α̃) + λ/2 ‖w* − w(α̃)‖², with α̃ the exact m-point dual (a few warm-started
  solver steps) or a learnt dual parameter (``alpha_mode`` "joint"). Working data: the teacher in the
  work dtype.
* :class:`KIPObjective` — KIP's kernel-ridge target loss on real batches (engine.kip). Working data:
  the training images (or, for an explicit kernel whose networks are never redrawn, their features
  φ(x), computed once) and their targets, in epochs of batches.
* :class:`CombinedObjective` — DGKIP with ``kip_weight`` w > 0: (1 − w)·G_S + w·KIP loss with the
  fixed ridge λ·m (the model DGKIP certifies). Only what is optimised changes; the gap reported and
  certified is DGKIP's.

:func:`make_objective` picks one from the config. Building one needs only the config and the kernel
(the plan's cost model uses it before any data exists); :meth:`Objective.prepare` then builds the
working data of a run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Generator

import numpy as np
import torch

from engine.certify import gap_terms
from engine.events import Event, Stage
from engine.gap_step import fused_gap, fused_gap_applies
from engine.kernels import Kernel
from engine.kip import kip_loss, kip_loss_and_grad, uses_feature_cache
from engine.solver import DENSE_NEWTON_MAX, solve_dense
from engine.teacher import Teacher
from engine.tensors import ROW_TILE, tiled, to_nchw

Tensor = torch.Tensor


@dataclass(frozen=True)
class StepValue:
    """One step's ``loss`` (a scalar tensor with a graph to the synthetic parameters, or without one
    where ``grad``, ∂loss/∂x̃ shaped as x̃, is given: the hand-written FC kernel steps) and, for
    objectives with a gap, its parts at this step (floats; NaN for KIP): ``fenchel_young`` + ``kernel_match``
    = ``gap`` (uncertified: without the certificate's rounding allowance)."""
    loss: Tensor
    gap: float = float("nan")
    fenchel_young: float = float("nan")
    kernel_match: float = float("nan")
    grad: Tensor | None = None

    def backward(self, xs: Tensor) -> None:
        """Write the step's gradient into the synthetic parameters' ``.grad`` (accumulating, as
        autograd does): ``grad`` into ``xs.grad`` where the step computed it by hand, else autograd
        through ``loss``."""
        if self.grad is None:
            self.loss.backward()
        elif xs.grad is None:
            xs.grad = self.grad
        else:                          # not in place: xs.grad may be a previous call's ``grad`` itself
            xs.grad = xs.grad + self.grad

    def differentiable(self, xs: Tensor) -> Tensor:
        """``loss`` with an autograd graph to ``xs`` (for a sum with another objective's loss)."""
        return self.loss if self.grad is None else _GivenGrad.apply(self.loss, xs, self.grad)


class _GivenGrad(torch.autograd.Function):
    """A value computed without a graph whose gradient in ``xs`` is known: forward(value, xs, grad)."""

    @staticmethod
    def forward(ctx, value, xs, grad):
        ctx.grad = grad
        return value.clone()

    @staticmethod
    def backward(ctx, out_grad):
        return None, ctx.grad * out_grad, None


@dataclass(frozen=True)
class StepShape:
    """The sizes a step's cost depends on: ``n`` training images (``k`` target columns) of shape
    ``chw`` = (C, H, W), ``m`` synthetic images, ``teacher_rows`` rows the teacher keeps (support rows
    or Nyström centres; for explicit kernels the teacher is w*, p × k), ``p`` the kernel's feature width
    (None: implicit), ``work_dtype`` the step's dtype."""
    n: int
    k: int
    m: int
    chw: tuple[int, int, int]
    teacher_rows: int
    p: int | None
    work_dtype: torch.dtype

    @property
    def d(self) -> int:
        return math.prod(self.chw)

    @property
    def work_bytes(self) -> int:
        """Bytes per element of the work dtype."""
        return torch.empty((), dtype=self.work_dtype).element_size()


def step_flops(kernel: Kernel, m: int, chw: tuple[int, ...], rows: int, p: int = 0, real_images: int = 0) -> float:
    """Rough forward flops of one distillation step with ``m`` synthetic images of shape ``chw`` (the
    step loop's thread policy, engine.device): an implicit kernel's m × ``rows`` block of real points
    (≈ 10 flops per pair and input value); an explicit kernel's features of the m images (and of
    ``real_images`` real ones, KIP with redrawn networks) plus m × ``rows`` products of width ``p``."""
    if not kernel.explicit:
        return 10.0 * m * rows * math.prod(chw)
    flops, _ = kernel.feature_cost(tuple(chw))
    return (m + real_images) * flops + 10.0 * m * rows * p


class Objective:
    """What one mode optimises. ``config``: the run's DistillConfig; ``kernel``: the run's kernel."""

    name = "objective"

    def __init__(self, config, kernel: Kernel) -> None:
        self.config, self.kernel = config, kernel

    # -- the run -------------------------------------------------------------------------------------
    def prepare(self, teacher: Teacher, x_train: np.ndarray, Y_train: Tensor, device: torch.device,
                dtype: torch.dtype, checkpoint: Callable[[], None]) -> Generator[Event, None, None]:
        """Build the working data on ``device`` in the work ``dtype``: ``teacher`` (float64),
        ``x_train`` the preprocessed (n, H, W, C) float32 images, ``Y_train`` (n, k) targets; may yield
        :class:`engine.events.Stage` events (pause and cancel are honoured through ``checkpoint``)."""
        raise NotImplementedError

    def step(self, step: int, xs: Tensor, Ys: Tensor, dual_param: Tensor | None) -> StepValue:
        """The loss of step ``step`` (1-based) for synthetic images ``xs`` (m, C, H, W) with targets
        ``Ys`` (m, k) and the learnt dual parameter (m, k) when ``alpha_mode`` is "joint"."""
        raise NotImplementedError

    def flops(self, m: int, chw: tuple[int, ...]) -> float:
        """Rough forward flops of one step (:func:`step_flops`), after :meth:`prepare`."""
        raise NotImplementedError

    # -- the cost model (engine.plan) ------------------------------------------------------------------
    def step_rows(self, z: StepShape) -> int:
        """Real rows a step pairs with the m synthetic images (teacher rows, KIP's batch, or both)."""
        raise NotImplementedError

    def timed_rows(self, z: StepShape) -> int:
        """Rows of the work a step-timing probe measures (the teacher's, or KIP's batch)."""
        raise NotImplementedError

    def working_parts(self, z: StepShape) -> list[tuple[str, int]]:
        """(name, bytes) of the working data alive through the steps, besides the teacher."""
        return []

    def cache_parts(self, z: StepShape) -> list[tuple[str, int]]:
        """(name, bytes) alive while a one-off feature cache is built (empty: none is built)."""
        return []

    def graph_bytes(self, z: StepShape) -> int:
        """Bytes of one step's autograd graph, the batch rows and the images with Adam's state."""
        raise NotImplementedError

    def _kernel_graph_bytes(self, z: StepShape) -> int:
        """The kernel's share of the graph: φ(x̃) for an explicit kernel (computed once per step; real
        rows are constants), else every pair of x̃ with the step's real rows and with itself."""
        if self.kernel.explicit:
            return self.kernel.feature_bytes(z.m, z.chw, z.work_dtype, True)
        return self.kernel.pair_bytes(z.chw, z.work_dtype, True) * (self.step_rows(z) * z.m + z.m * z.m)

    def extra_row_seconds(self, z: StepShape, probe_rows: int, block: Callable[[int, int], float],
                          pair: float) -> float:
        """Forward seconds of one step beyond a probe measured with ``probe_rows`` rows: ``block(r, c)``
        the seconds of an r × c kernel block, ``pair`` the seconds of one φ·φ product."""
        raise NotImplementedError

    def cache_seconds(self, z: StepShape, per_image: float) -> float:
        """Seconds of the one-off feature cache (``per_image``: seconds of φ on one image)."""
        return 0.0


class DGKIPObjective(Objective):
    """The duality gap at the teacher (module doc)."""

    name = "dgkip"

    def prepare(self, teacher, x_train, Y_train, device, dtype, checkpoint):
        self.teacher = teacher.cast(dtype, device)
        self.alpha_prev: Tensor | None = None      # the exact dual of the last step (warm start)
        self.alpha_prev2: Tensor | None = None     # and of the step before it (extrapolation)
        yield from ()

    def gap(self, xs: Tensor, Ys: Tensor, dual_param: Tensor | None) -> tuple[Tensor, Tensor]:
        """(mean Fenchel-Young part, kernel-matching part), differentiable scalars (engine.certify.gap_terms)."""
        cfg, tw = self.config, self.teacher
        Z, Kss = tw.scores_and_gram(xs)
        if dual_param is None:
            A = self._exact_alpha(Kss, Ys)
        else:
            A = tw.loss.alpha_from_param(Ys, dual_param)
        return gap_terms(tw.loss, cfg.lam, tw.w_norm2, Z, Ys, A, Kss)

    def step(self, step, xs, Ys, dual_param):
        if fused_gap_applies(self.kernel, self.teacher, xs, Ys, dual_param):      # FC kernels (engine.gap_step)
            loss, grad, fy, km = fused_gap(self.kernel, self.teacher, self.config.lam, xs, Ys,
                                           lambda Kss: self._exact_alpha(Kss, Ys))
            return StepValue(loss, fy + km, fy, km, grad)
        fy_t, km_t = self.gap(xs, Ys, dual_param)
        fy, km = fy_t.item(), km_t.item()
        return StepValue(fy_t + km_t, fy + km, fy, km)

    @torch.no_grad()
    def _exact_alpha(self, Kss: Tensor, Ys: Tensor) -> Tensor:
        """The exact m-point dual (m, C) at K_SS (relative gap ≤ 1e-6), warm-started from the last
        step's, or for a smooth loss from the linear extrapolation 2 α_{t−1} − α_{t−2} of the last two.

        The images move between steps, so the last step's α is stale: in an MNIST cross-entropy run
        (2,000 training images, ntk-fc) its relative gap was 1.3e-2 (IPC 1) and 0.20 (IPC 10), one
        Newton step left 5e-6 and 3e-4, and a second step was needed almost every time. From the
        extrapolation the start was at 9e-6 and 2.4e-4, and one Newton step reached 1e-12 and 6e-8
        (at most 3e-7) in all 39 consecutive steps checked: one Newton step and one certificate a
        step instead of two (Newton-CG also certifies the start, which sets its inner tolerance). Newton works on the coefficients c = α/(λ m), where any start is
        valid (α is recomputed from the scores, feasible); the hinge's coordinate descent takes the
        last α, which lies in its box."""
        loss = self.teacher.loss
        start = self.alpha_prev if self.alpha_prev is not None and self.alpha_prev.shape == Ys.shape else None
        extrapolated = start is not None and loss.smooth and self.alpha_prev2 is not None \
            and self.alpha_prev2.shape == start.shape
        if extrapolated:
            start = torch.add(start, start - self.alpha_prev2)
        # the start is certified where Newton-CG sets its first inner tolerance from its gap; a direct
        # Newton system (small m·C) needs no tolerance, and one step from the extrapolation suffices
        alpha = solve_dense(Kss.detach(), Ys.detach(), loss, self.config.lam, tol=1e-6, max_iter=8, alpha0=start,
                            certify_start=extrapolated and Ys.numel() > DENSE_NEWTON_MAX).alpha
        self.alpha_prev2, self.alpha_prev = self.alpha_prev, alpha
        return alpha

    def flops(self, m, chw):
        tw = self.teacher
        if tw.weights is not None:
            return step_flops(self.kernel, m, chw, tw.weights.shape[1], tw.weights.shape[0])
        return step_flops(self.kernel, m, chw, tw.x.shape[0])

    def step_rows(self, z):
        return z.teacher_rows

    def timed_rows(self, z):
        return z.teacher_rows

    def graph_bytes(self, z):
        return self._kernel_graph_bytes(z) + 6 * z.m * z.d * z.work_bytes      # images + Adam

    def extra_row_seconds(self, z, probe_rows, block, pair):
        if self.kernel.explicit:          # w*: a step's cost does not grow with the teacher's rows
            return 0.0
        return max(0.0, block(z.m, z.teacher_rows) - block(z.m, probe_rows))


class _KIPBatches:
    """KIP's working data: the training images (or their features φ(x), cached once when the kernel's
    networks are never redrawn) and targets on the work device, served in epochs of ``b`` rows."""

    def __init__(self, config, kernel: Kernel, cached: bool) -> None:
        self.config, self.kernel, self.cached = config, kernel, cached

    def prepare(self, x_train, Y_train, device, dtype, checkpoint) -> Generator[Event, None, None]:
        x_work = f_work = None
        if self.cached:
            yield Stage("features", f"KIP: features of the {len(x_train):,} training images (computed once)")
            with torch.no_grad():
                f_work = tiled(lambda x: self.kernel.features(to_nchw(x).to(device, dtype)), x_train,
                               before_each=checkpoint)
        else:
            x_work = to_nchw(x_train).to(device, dtype)
        Y_work = Y_train.to(device, dtype)
        self.b = min(self.config.kip_batch, Y_work.shape[0])
        self.has_images, self.p = x_work is not None, 0 if f_work is None else f_work.shape[1]
        self.epochs = _EpochBatches([x_work, Y_work, f_work], self.b, self.config.seed)

    def next(self) -> list[Tensor | None]:
        """(x_B (b, C, H, W) or None, Y_B (b, k), φ(x_B) (b, p) or None)."""
        return self.epochs.next()

    # cost model
    def working_parts(self, z: StepShape) -> list[tuple[str, int]]:
        if self.cached:
            return [("KIP features of x_train", z.n * (z.p + z.k) * z.work_bytes)]
        return [("KIP working copy of x_train", z.n * (z.d + z.k) * z.work_bytes)]

    def cache_parts(self, z: StepShape) -> list[tuple[str, int]]:
        if not self.cached:
            return []
        return [("KIP feature tiles and their concatenation", 2 * z.n * z.p * z.work_bytes),
                ("one tile's features", self.kernel.feature_bytes(min(z.n, ROW_TILE), z.chw, z.work_dtype, False))]

    def batch(self, z: StepShape) -> int:
        return min(self.config.kip_batch, z.n)

    def batch_graph_bytes(self, z: StepShape) -> int:
        """The batch's share of a step: its rows, and for explicit kernels its features and products."""
        b, ew = self.batch(z), z.work_bytes
        graph = 0
        if self.kernel.explicit:
            graph += (0 if self.cached else self.kernel.feature_bytes(b, z.chw, z.work_dtype, False)) + b * (z.m + z.p) * ew
        return graph + (0 if self.cached else b * z.d * ew)

    def cache_seconds(self, z: StepShape, per_image: float) -> float:
        return z.n * per_image if self.cached else 0.0


class _WithBatches:
    """For objectives that take KIP's real batches (``self.batches``, a :class:`_KIPBatches`): the cost
    of that working data."""

    batches: _KIPBatches

    def working_parts(self, z):
        return self.batches.working_parts(z)

    def cache_parts(self, z):
        return self.batches.cache_parts(z)

    def cache_seconds(self, z, per_image):
        return self.batches.cache_seconds(z, per_image)


class KIPObjective(_WithBatches, Objective):
    """KIP's target loss on real batches (module doc); random-feature kernels redraw their networks
    every ``redraw_every`` steps (RFAD)."""

    name = "kip"

    def __init__(self, config, kernel):
        super().__init__(config, kernel)
        self.batches = _KIPBatches(config, kernel, uses_feature_cache(config, kernel))
        self.step_kernel = kernel

    def prepare(self, teacher, x_train, Y_train, device, dtype, checkpoint):
        yield from self.batches.prepare(x_train, Y_train, device, dtype, checkpoint)

    def step(self, step, xs, Ys, dual_param):
        redraw = self.kernel.redraw_every
        if redraw and (step - 1) % redraw == 0:                  # RFAD: fresh random networks
            self.step_kernel = self.kernel.redraw(self.config.seed * 1_000_003 + step)
        xb, Yb, fb = self.batches.next()
        cfg = self.config
        by_hand = kip_loss_and_grad(self.step_kernel, xs, Ys, xb, Yb, cfg.lam, fb=fb, ridge=cfg.kip_ridge)
        if by_hand is not None:
            return StepValue(by_hand[0], grad=by_hand[1])
        return StepValue(kip_loss(self.step_kernel, xs, Ys, xb, Yb, cfg.lam, fb=fb, ridge=cfg.kip_ridge))

    def flops(self, m, chw):
        b = self.batches
        real = b.b if b.has_images and self.kernel.explicit else 0
        return step_flops(self.kernel, m, chw, b.b, b.p, real_images=real)

    def step_rows(self, z):
        return self.batches.batch(z)

    def timed_rows(self, z):
        return self.batches.batch(z)

    def graph_bytes(self, z):
        return self._kernel_graph_bytes(z) + self.batches.batch_graph_bytes(z) + 6 * z.m * z.d * z.work_bytes

    def _rows_seconds(self, r: int, z: StepShape, block, pair) -> float:
        return r * z.m * pair if self.batches.cached else block(r, z.m)

    def extra_row_seconds(self, z, probe_rows, block, pair):
        b = self.batches.batch(z)
        return max(0.0, self._rows_seconds(b, z, block, pair) - self._rows_seconds(probe_rows, z, block, pair))


class CombinedObjective(_WithBatches, DGKIPObjective):
    """(1 − w)·G_S + w·KIP loss (fixed ridge λ·m) with w = ``kip_weight`` (module doc). The kernel
    is never redrawn: the teacher's w* lives in the feature space of the kernel's own networks."""

    name = "dgkip+kip"

    def __init__(self, config, kernel):
        super().__init__(config, kernel)
        self.batches = _KIPBatches(config, kernel, uses_feature_cache(config, kernel))

    def prepare(self, teacher, x_train, Y_train, device, dtype, checkpoint):
        yield from self.batches.prepare(x_train, Y_train, device, dtype, checkpoint)
        yield from super().prepare(teacher, x_train, Y_train, device, dtype, checkpoint)

    def step(self, step, xs, Ys, dual_param):
        value = super().step(step, xs, Ys, dual_param)
        w, cfg = self.config.kip_weight, self.config
        xb, Yb, fb = self.batches.next()
        by_hand = None if value.grad is None else kip_loss_and_grad(self.kernel, xs, Ys, xb, Yb, cfg.lam, fb=fb,
                                                                    ridge="fixed")
        if by_hand is not None:
            return StepValue((1.0 - w) * value.loss + w * by_hand[0], value.gap, value.fenchel_young,
                             value.kernel_match, by_hand[1].mul_(w).add_(value.grad, alpha=1.0 - w))
        loss = (1.0 - w) * value.differentiable(xs) + w * kip_loss(self.kernel, xs, Ys, xb, Yb, cfg.lam, fb=fb,
                                                                    ridge="fixed")
        return StepValue(loss, value.gap, value.fenchel_young, value.kernel_match)

    def step_rows(self, z):
        return z.teacher_rows + self.batches.batch(z)

    def graph_bytes(self, z):
        return super().graph_bytes(z) + self.batches.batch_graph_bytes(z)

    def extra_row_seconds(self, z, probe_rows, block, pair):
        b = self.batches.batch(z)
        rows = (lambda r: r * z.m * pair) if self.kernel.explicit else (lambda r: block(r, z.m))
        return super().extra_row_seconds(z, probe_rows, block, pair) + max(0.0, rows(b) - rows(min(b, probe_rows)))


def make_objective(config, kernel: Kernel) -> Objective:
    """The objective of ``config.mode`` (and ``kip_weight``) for ``kernel``; cheap (no data)."""
    if config.mode == "kip":
        return KIPObjective(config, kernel)
    if config.kip_weight > 0:
        return CombinedObjective(config, kernel)
    return DGKIPObjective(config, kernel)


class _EpochBatches:
    """KIP's real batches of ``b`` rows of the same-length ``arrays`` (None entries stay None): epochs of
    a seeded permutation, each row once per epoch (as KIP's shuffled target iterator), a trailing
    partial batch dropped. Each epoch permutes the arrays once, so a step's batch is a view, not a copy;
    when b covers every row the arrays are used as they are (the loss does not depend on row order)."""

    def __init__(self, arrays: list[Tensor | None], b: int, seed: int):
        self.arrays, self.b = arrays, b
        self.n = next(a.shape[0] for a in arrays if a is not None)
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch: list[Tensor | None] = arrays
        self.at = self.n if b < self.n else 0

    def next(self) -> list[Tensor | None]:
        if self.b >= self.n:
            return self.arrays
        if self.at + self.b > self.n:
            perm = torch.randperm(self.n, generator=self.gen)
            self.epoch = [None if a is None else a[perm.to(a.device)] for a in self.arrays]
            self.at = 0
        sl = slice(self.at, self.at + self.b)
        self.at += self.b
        return [None if a is None else a[sl] for a in self.epoch]
