"""Small immutable events yielded by the engine's step iterators.

They carry floats and NumPy arrays only (never live tensors), so the GUI thread and the CLI can
hold them without touching the engine's device memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Stage:
    """A phase starts: ``name`` in {"data", "teacher" (the exact or Nyström teacher, then the test set,
    the random-subset baseline and the initial images), "features" (KIP's feature cache), "distill",
    "certify", "certify-exact"}."""
    name: str
    message: str = ""


# The stages before the first step: a stop requested there lets the teacher be fitted (the certificate
# needs it) and keeps the initial images at step 0 (the command line's Ctrl-C and the app's Stop say so).
# After the steps, a stop leaves "certify" to finish and skips "certify-exact" (engine.exact_gap).
STAGES_BEFORE_STEPS = ("data", "teacher", "features")


def stop_effect(stage: str | None) -> str:
    """What a stop requested during ``stage`` (None or "" before the first Stage event) does:
    "before-steps" (the teacher is still fitted, the initial images certified and kept), "steps"
    (after the current step), "certify" (certification finishes) or "certify-exact" (that check is
    skipped)."""
    if not stage or stage in STAGES_BEFORE_STEPS:
        return "before-steps"
    return stage if stage in ("certify", "certify-exact") else "steps"


@dataclass(frozen=True)
class Progress:
    """Determinate progress inside a long stage: ``stage`` is "kernel" for the Nyström teacher's
    K(X, Z) tiles, "teacher-kernel" / "teacher-features" for the exact teacher's K(X, X) or Φ(X)
    rows, "certify-exact" for the pass over the full kernel; ``done`` of ``total`` rows after
    ``seconds``."""
    stage: str
    done: int
    total: int
    seconds: float


@dataclass(frozen=True)
class TeacherProgress:
    """One certificate of the full-data (teacher) solve, after ``iteration`` of at most ``total``
    ``unit``s (``total`` 0: the config's ``teacher_max_iter``; the hinge's coordinate descent counts
    single coordinate updates, of which ``teacher_max_iter`` sweeps allow N per class each)."""
    iteration: int
    gap: float          # certified duality gap P(w(α)) − D(α), ≥ 0
    rel_gap: float      # gap / |P|
    seconds: float
    total: int = 0
    unit: str = "iteration"


@dataclass(frozen=True)
class TeacherDone:
    iterations: int
    gap: float
    rel_gap: float
    primal: float
    seconds: float
    n: int
    n_support: int      # rows with non-zero dual variable (all for smooth losses)
    solver: str
    kind: str = "exact"          # "exact" (all n points) or "nystrom" (M centres)
    centres: int | None = None   # Nyström centres M
    reason: str = ""             # why this teacher ran (the plan's words)
    unit: str = "iteration"      # what ``iterations`` counts (TeacherProgress.unit)


@dataclass(frozen=True)
class Step:
    """One distillation step. ``gap`` = ``fenchel_young`` + ``kernel_match`` (DGKIP mode);
    in KIP mode ``objective`` is the KRR target loss and the gap fields are NaN except at evals."""
    step: int               # 1-based
    total: int
    objective: float
    gap: float
    fenchel_young: float
    kernel_match: float
    radius: float           # sqrt(2 gap / λ), bounds ||w_S − w_D|| in the RKHS
    elapsed: float          # seconds since the distillation phase started


@dataclass(frozen=True)
class Snapshot:
    """Synthetic images in pixel space, ``images`` float32 (m, H, W, C) in [0, 1]; ``labels`` (m,) int."""
    step: int
    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Evaluation:
    """Certificates (float64, feasible dual variables) and kernel-model test accuracies (fractions)."""
    step: int
    gap: float
    radius: float
    distilled_accuracy: float       # same-loss kernel model trained on S
    teacher_accuracy: float         # the teacher (all training data): a reference, not a bound
    random_accuracy: float          # same model on a random class-balanced real subset of size m
    certified_consistency: float    # fraction of test points whose prediction provably matches the teacher's
    error_lower: float              # certified bounds on the test error of the model trained on S
    error_upper: float
    agreement: float = float("nan")         # measured: fraction of test points where S's model and the teacher agree
    distance: float = float("nan")          # measured: ‖w_S − w*‖ in the RKHS (the radius bounds it)
    radius_for_half: float = float("nan")   # the radius below which half the test predictions would be certified


@dataclass(frozen=True)
class Done:
    """The run ended (finished, stopped or cancelled); ``result`` is an :class:`engine.result.DistillResult`
    (``None`` when cancelled before any distilled set existed)."""
    reason: str                    # "finished" | "stopped" | "cancelled"
    result: Any = None
    metrics: dict = field(default_factory=dict)


Event = Stage | Progress | TeacherProgress | TeacherDone | Step | Snapshot | Evaluation | Done
