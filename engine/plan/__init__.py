"""The run plan: memory and time estimate of a run before anything runs (shown by the GUI, printed by
the CLI), the teacher it will use, and whether it is refused.

``estimate_run(config, report) -> RunEstimate`` needs only the dataset report (class names, per-class
train/test counts, image shape (H, W, C)) and the config; it reads no pixels and allocates nothing big.

The teacher is chosen here too (``teacher``, ``centres``; config ``teacher`` = auto): the exact teacher
(all n points) when the whole run fits the memory budget with it, else the Nyström teacher
(engine.nystrom) with the largest number of centres M whose run fits, K(X, Z) cached. The run asks
:func:`check_run` for this plan and follows it.

Refusal (``fits``) is decided here, once, for the estimate and for the run alike: :func:`check_run`,
which :func:`engine.distill.run` calls right after the dataset is prepared (before any kernel is
built), raises :class:`engine.operators.ResourceError` with the estimate's message exactly when
``fits`` is false. A run does not fit when, with the training-set size it will have (classes selected,
``max_per_class`` applied),

- the teacher's kernel would be stored dense (n × n, float64) over ``memory_budget_gb`` — the rule of
  :func:`engine.operators.operator_plan`, which ``build_operator`` still applies on its own; or
- the modelled peak over *all* stages (``memory_bytes``; dense or n × p feature storage, conv kernels'
  per-pixel covariances in the step graph, …) is over ``memory_budget_gb``; or
- the peak drawn from one memory pool is over what this machine can give now
  (:func:`available_bytes`: ``MemAvailable`` of host RAM, free memory of the CUDA device), which is
  the effective limit whenever it is below the budget.

The refusal message says what the run needs (peak, its stage and largest parts, every stage's peak)
and the alternatives the model itself checked: the largest ``max_per_class`` that fits, a smaller
``ipc`` (the step graph grows with ipc × n), an explicit-feature kernel (``rf-fc``, ``rf-conv``) that
fits, and the budget that would do — when raising it helps at all.

Modules: :mod:`engine.plan.memory` (the peak per stage and the teacher plan), :mod:`engine.plan.time`
(the time model and the step-timing probe), :mod:`engine.plan.advice` (the refusal message and its
alternatives). What a step costs comes from the kernel (:class:`engine.kernels.Kernel`'s cost methods)
and the objective (:mod:`engine.objectives`); the plan keeps no list of kernels or modes of its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


from engine.config import ConfigError, DistillConfig
from engine.data.report import format_bytes
from engine.device import resolve_device
from engine.operators import ResourceError
from engine.plan.advice import POOL_NAMES, refusal
from engine.plan.memory import answer, available_bytes, feature_dim, fits_rule, make_run, pool_of, report_field
from engine.plan.time import format_seconds, machine_rates, run_seconds, two_figures

__all__ = ["RunEstimate", "estimate_run", "check_run", "format_seconds", "feature_dim", "machine_rates",
           "available_bytes"]


@dataclass(frozen=True)
class RunEstimate:
    """Estimate of one run.

    ``memory_bytes``: modelled peak bytes of the run's allocations (host and device together);
    ``seconds_hint``: wall time in seconds (two significant figures) or ``None`` when unknown
    (non-CPU devices); ``fits``: ``False`` exactly when the run is refused (:func:`check_run` raises
    :class:`engine.operators.ResourceError` with ``message``): the peak is over the memory budget or
    over the memory this machine has available; ``message``: when it does not fit, what the run needs
    (per stage) and what to change, else a short confirmation.
    ``n_train``: training images after class selection and the cap; ``n_test``: test points evaluated;
    ``storage``: "dense" (n × n), "features" (n × p) or "nystrom" (n × M) teacher operator of
    ``operator_bytes`` bytes;
    ``teacher``: "exact" or "nystrom" (the plan the run follows), ``centres``: Nyström centres M,
    ``teacher_reason``: why, in words; ``nystrom_cache``: K(X, Z) is kept (else recomputed per pass);
    ``budget_bytes``: the memory budget in bytes; ``peak_stage``: the stage of the peak, with its
    ``parts`` as (name, bytes) pairs; ``stages``: every stage's peak as (stage, bytes) pairs, in run
    order; ``limit_bytes``: the limit the peak was held to (the budget, or less where this machine
    has less available); ``device``: the compute device.
    ``changes``: when refused, the alternatives the message names as (short label, config field
    changes) pairs, e.g. ``("Cap at 2,660 per class", {"max_per_class": 2660})`` — each checked by the
    model to fit, so applying one (``config.replace(**changes)``) gives a run that is not refused.
    """

    memory_bytes: int
    seconds_hint: float | None
    fits: bool
    message: str
    n_train: int = 0
    n_test: int = 0
    storage: str = "dense"
    operator_bytes: int = 0
    budget_bytes: int = 0
    peak_stage: str = ""
    parts: tuple[tuple[str, int], ...] = ()
    device: str = "cpu"
    stages: tuple[tuple[str, int], ...] = ()
    limit_bytes: int = 0
    teacher: str = "exact"
    centres: int | None = None
    teacher_reason: str = ""
    nystrom_cache: bool = True
    changes: tuple[tuple[str, dict[str, Any]], ...] = ()
    ranks: int = 1

    def summary(self) -> str:
        """One line for the CLI, e.g. ``estimate: peak memory about 64.0 MiB (teacher …), about 20 s on cpu``."""
        shape = (f"{self.n_train:,} × {self.n_train:,} dense" if self.storage == "dense"
                 else f"Nyström {self.n_train:,} × {self.centres:,} K(X, Z)"
                      + ("" if self.nystrom_cache else " recomputed per pass") if self.storage == "nystrom"
                 else f"{self.n_train:,} × p features")
        each = f" per process ({self.ranks} processes; rank 0 also distils)" if self.ranks > 1 else ""
        text = (f"estimate: peak memory about {format_bytes(self.memory_bytes)}{each} at the {self.peak_stage} "
                f"stage (teacher kernel {shape}, {format_bytes(self.operator_bytes)}; budget "
                f"{format_bytes(self.budget_bytes)})")
        if self.seconds_hint is not None:
            text += f", {format_seconds(self.seconds_hint)} on {self.device}"
        return text

    def details(self) -> str:
        """Multi-line breakdown of the peak stage (the GUI's tooltip)."""
        lines = [f"Peak at the {self.peak_stage} stage, {self.n_train:,} training and {self.n_test:,} "
                 f"test images:"]
        lines += [f"  {name}: {format_bytes(size)}" for name, size in self.parts if size > 0]
        if self.stages:
            lines.append("Peak of each stage: " + ", ".join(f"{name} {format_bytes(size)}"
                                                           for name, size in self.stages) + ".")
        lines.append("The run is refused before anything big is built when this peak is over the memory "
                     "budget or over the memory this machine has available.")
        return "\n".join(lines)


def estimate_run(config: DistillConfig, report: Any, ranks: int = 1, with_time: bool = True) -> RunEstimate:
    """Estimate memory and time of ``run(config)`` on the dataset described by ``report`` (a
    :class:`engine.data.DatasetReport` or the mapping ``Dataset.describe()`` returns: ``classes``,
    ``train_counts``, ``test_counts``, ``image_shape`` (H, W, C)).

    Raises :class:`ConfigError` for an invalid config or an unavailable device and ``ValueError`` for
    kernel parameters the kernel rejects — exactly what the run would raise. With ``ranks`` > 1
    (torchrun) memory and time are per process: each holds n/ranks training rows of the Nyström
    teacher (the only teacher that is sharded).

    The time hint (``with_time``, CPU runs that fit) measures a few real steps first
    (:mod:`engine.plan.time`: 0.05–5 s once per setting that changes a step's work); without it the
    answer is immediate and ``seconds_hint`` is ``None``."""
    return _estimate(config, report, with_time=with_time, ranks=ranks)


def check_run(config: DistillConfig, report: Any, ranks: int = 1) -> RunEstimate:
    """The run's refusal (called by :func:`engine.distill.run` before any kernel is built): the
    estimate (without the time hint) when it fits, else :class:`ResourceError` with its message —
    the same decision as :attr:`RunEstimate.fits`."""
    estimate = _estimate(config, report, with_time=False, ranks=ranks)
    if not estimate.fits:
        raise ResourceError(estimate.message)
    return estimate


def _estimate(config: DistillConfig, report: Any, with_time: bool, ranks: int = 1) -> RunEstimate:
    cfg = config.validate()
    try:
        device = resolve_device(cfg.device)
    except RuntimeError as exc:
        raise ConfigError("device", str(exc)) from None
    h, w, c = (int(v) for v in report_field(report, "image_shape"))
    chw = (c, h, w)
    run = make_run(cfg, chw, device)
    budget = int(cfg.memory_budget_gb * 2**30)
    available = {pool: available_bytes(pool, device) for pool in dict.fromkeys(("cpu", pool_of(device), pool_of(run.cdev)))}
    limit = min([budget] + [free for free in available.values() if free is not None])

    a = answer(run, report, cfg.max_per_class, budget, ranks)
    fits = fits_rule(a, budget, available)
    s, pk = a.sizes, a.peak
    notes: list[str] = []
    changes: tuple[tuple[str, dict[str, Any]], ...] = ()
    if not fits:
        text, changes = refusal(run, report, a, budget, available, chw, device)
        notes.append(text)
    else:
        text = f"Fits the memory budget of {format_bytes(budget)}"
        for pool, free in available.items():
            if free is not None and free < budget and pk.pools.get(pool, 0) > 0:
                text += f" and the {format_bytes(free)} of {POOL_NAMES[pool]} available now"
        notes.append(text)

    seconds = (two_figures(sum(run_seconds(run, s, a.storage, a.nys).values()))
               if with_time and device.type == "cpu" and fits else None)
    return RunEstimate(memory_bytes=int(pk.total), seconds_hint=seconds, fits=fits, message=" ".join(notes),
                       n_train=s.n, n_test=s.n_test, storage=a.storage, operator_bytes=int(a.operator_bytes),
                       budget_bytes=budget, peak_stage=pk.stage, parts=pk.parts, device=device.type,
                       stages=pk.stages, limit_bytes=int(limit),
                       teacher="nystrom" if a.nys is not None else "exact",
                       centres=None if a.nys is None else a.nys.centres, teacher_reason=a.reason,
                       nystrom_cache=True if a.nys is None else a.nys.cache, changes=changes, ranks=ranks)
