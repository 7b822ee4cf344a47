"""The refusal message of a run that does not fit, and the alternatives the memory model checked
(engine.plan): the largest ``max_per_class`` that fits, a smaller ``ipc`` (the step graph grows with
ipc × n), the Nyström teacher, an explicit-feature kernel (``rf-fc``, ``rf-conv``) that fits, and the
budget that would do — when raising it helps at all."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Callable

import torch

from engine.config import ConfigError
from engine.data.report import format_bytes
from engine.operators import max_dense_points
from engine.plan.memory import (CERT_BYTES, Answer, Run, answer, class_counts, count_sizes, fits_rule, largest_cap,
                                make_run)


# --------------------------------------------------------------------------------------- the answer
def _round_up(x: float, figures: int = 2) -> float:
    """``x`` rounded *up* to ``figures`` significant figures (budgets we suggest must suffice)."""
    if x <= 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(x)) - figures + 1)
    return math.ceil(x / scale - 1e-9) * scale


def _gib(nbytes: float) -> str:
    """``nbytes`` as a ``memory_budget_gb`` value (two significant figures, rounded up) that, read back
    as the run reads it (``int(gb * 2**30)``), is never below ``nbytes``."""
    value = _round_up(nbytes / 2**30)
    step = 10 ** (math.floor(math.log10(value)) - 1) if value > 0 else 1e-9
    while int(float(f"{value:.10g}") * 2**30) < nbytes:
        value += step
    return f"{value:.10g}"


POOL_NAMES = {"cpu": "memory (RAM)", "cuda": "GPU memory"}


def refusal(run: Run, report: Any, a: Answer, budget: int, available: Mapping[str, int | None],
             chw: tuple[int, int, int], device: torch.device) -> tuple[str, tuple[tuple[str, dict[str, Any]], ...]]:
    """Why the run does not fit (what it needs, per stage) and the alternatives, each checked by the
    model: the largest max_per_class that fits, a smaller ipc, an explicit-feature kernel, the budget;
    with the alternatives as (label, config changes) pairs (:attr:`RunEstimate.changes`)."""
    cfg = run.config
    s, pk = a.sizes, a.peak
    train, _ = class_counts(cfg, report)
    current_cap = min(cfg.max_per_class or max(train, default=0), max(train, default=0))

    def images(cap: int) -> str:
        return f"{count_sizes(cfg, report, cap).n:,} training images"

    # what it needs
    storage = (f"{s.n:,} × {s.n:,} dense" if a.storage == "dense"
               else f"Nyström {s.n:,} × {a.nys.centres:,} K(X, Z)" if a.storage == "nystrom"
               else f"{s.n:,} × {run.p:,} features")
    over: list[str] = []
    if pk.total > budget:
        over.append(f"the memory budget of {format_bytes(budget)}")
    short = [(pool, free) for pool, free in available.items()
             if free is not None and pk.pools.get(pool, 0) > free]
    for pool, free in short:
        mine = pk.pools[pool]
        over.append(f"the {format_bytes(free)} of {POOL_NAMES[pool]} this machine has available now"
                    + (f" (its share: {format_bytes(mine)})" if mine != pk.total else ""))
    top = sorted(((size, name) for name, size in pk.parts if size > 0), reverse=True)[:2]
    if not a.teacher_ok:
        text = (f"Will not fit: the teacher's {s.n:,} × {s.n:,} kernel matrix needs "
                f"{format_bytes(a.operator_bytes)} (float64), over the memory budget of {format_bytes(budget)} "
                f"(at most {max_dense_points(CERT_BYTES, budget):,} training images fit); the whole run needs "
                f"about {format_bytes(pk.total)} at its peak, in the {pk.stage} stage, over {' and '.join(over)}.")
    else:
        text = (f"Will not fit: the run needs about {format_bytes(pk.total)} at its peak, in the {pk.stage} "
                f"stage ({', '.join(f'{name} {format_bytes(size)}' for size, name in top)}; teacher kernel "
                f"{storage}, {format_bytes(a.operator_bytes)}), over {' and '.join(over)}.")
    text += " Peak of each stage: " + ", ".join(f"{name} {format_bytes(size)}" for name, size in pk.stages) + "."

    # the alternatives, each one checked by the model
    found = _alternatives(run, report, budget, available, current_cap, chw, device, images)
    advice = [change for change, _, _ in found]
    changes = [button for _, _, button in found]
    if not short:
        advice.append(f"raise memory_budget_gb to at least {_gib(pk.total)}")
        changes.append((f"Raise the memory budget to {_gib(pk.total)} GiB", {"memory_budget_gb": float(_gib(pk.total))}))
    else:                   # the machine cannot give the peak: raising the budget alone does not help
        if not advice:      # nothing fits the budget: what fits this machine, with the budget it needs
            found = _alternatives(run, report, 2**62, available, current_cap, chw, device, images)
            advice = [f"raise memory_budget_gb to at least {_gib(peak)} and {change}" for change, peak, _ in found]
            changes = [(f"{label}, budget {_gib(peak)} GiB", {**fields, "memory_budget_gb": float(_gib(peak))})
                       for _, peak, (label, fields) in found]
        advice.append(f"run it where more {' and '.join(POOL_NAMES[p] for p, _ in short)} is free "
                      f"(raising memory_budget_gb alone does not help on this machine)")
    return text + " " + _join(advice) + ".", tuple(changes)


def _alternatives(run: Run, report: Any, budget: int, available: Mapping[str, int | None], current_cap: int,
                  chw: tuple[int, int, int], device: torch.device, images: Callable[[int], str]
                  ) -> list[tuple[str, int, tuple[str, dict[str, Any]]]]:
    """(advice, its peak bytes, (button label, config changes)) for each change that makes the run fit
    ``budget`` and the machine:
    the largest max_per_class below the current one, the largest smaller ipc (or ipc and
    max_per_class together when neither alone does), and rf-fc / rf-conv (at the current cap, else
    at the largest cap they allow when that beats the current kernel's)."""
    cfg = run.config
    out: list[tuple[str, int, tuple[str, dict[str, Any]]]] = []

    def fits(r: Run, cap: int | None) -> Answer | None:
        a = answer(r, report, cap, budget)
        return a if fits_rule(a, budget, available) else None

    def cap_for(r: Run) -> int | None:
        """The largest per-class cap below the current one (and ≥ ipc) at which ``r`` fits."""
        return largest_cap(lambda x: fits(r, x) is not None, r.config.ipc, current_cap - 1)

    def with_ipc(i: int) -> Run:
        return dataclasses.replace(run, config=cfg.replace(ipc=i))

    cap = cap_for(run)
    if cap:
        out.append((f"lower max_per_class to {cap} ({images(cap)})", fits(run, cap).peak.total,
                    (f"Cap at {cap:,} per class", {"max_per_class": cap})))
    ipc = largest_cap(lambda i: fits(with_ipc(i), cfg.max_per_class) is not None, 1, cfg.ipc - 1)
    if ipc:
        out.append((f"lower ipc to {ipc} (the distillation step's kernel graph grows with ipc × n)",
                    fits(with_ipc(ipc), cfg.max_per_class).peak.total, (f"Use {ipc} per class", {"ipc": ipc})))
    elif not cap and cfg.ipc > 1:               # neither alone: ipc and max_per_class together
        top = largest_cap(lambda i: cap_for(with_ipc(i)) is not None, 1, cfg.ipc - 1)
        if top:
            pairs = [(i, cap_for(with_ipc(i))) for i in dict.fromkeys((top, 1))]
            peak = max(fits(with_ipc(i), c).peak.total for i, c in pairs)
            out.append(("lower ipc and max_per_class together (" + ", or ".join(
                f"ipc {i} with max_per_class {c}, {images(c)}" for i, c in pairs) + ")", peak,
                (f"Use {pairs[0][0]} per class, cap at {pairs[0][1]:,}", {"ipc": pairs[0][0], "max_per_class": pairs[0][1]})))
    if cfg.teacher == "exact":                   # the Nyström teacher with the most centres that fit
        auto = answer(dataclasses.replace(run, config=cfg.replace(teacher="auto")), report, cfg.max_per_class, budget)
        if fits_rule(auto, budget, available) and auto.nys is not None:
            out.append((f"set teacher to auto (a Nyström teacher with {auto.nys.centres:,} centres on all "
                        f"{images(current_cap)}: about {format_bytes(auto.peak.total)} at its peak)", auto.peak.total,
                        (f"Use a Nyström teacher ({auto.nys.centres:,} centres)", {"teacher": "auto"})))
    for name in ("rf-fc", "rf-conv"):
        if name == cfg.kernel:
            continue
        try:
            other = make_run(cfg.replace(kernel=name, kernel_params={}), chw, device)
        except (ValueError, ConfigError):                        # e.g. rf-conv on images too small
            continue
        what = f"use {name} (explicit features, {other.p:,} per image"
        b = fits(other, cfg.max_per_class)
        if b is not None:
            out.append((f"{what}: about {format_bytes(b.peak.total)} at its peak)", b.peak.total,
                        (f"Use {name}", {"kernel": name, "kernel_params": {}})))
            continue
        cap_other = cap_for(other)
        if cap_other and (cap is None or cap_other > cap):
            out.append((f"{what}) with max_per_class {cap_other} ({images(cap_other)})",
                        fits(other, cap_other).peak.total,
                        (f"Use {name}, cap at {cap_other:,} per class",
                         {"kernel": name, "kernel_params": {}, "max_per_class": cap_other})))
    return out


def _join(items: list[str]) -> str:
    """["a", "b", "c"] → "A, b, or c" (first letter capitalised)."""
    text = items[0] if len(items) == 1 else ", ".join(items[:-1]) + ", or " + items[-1]
    return text[:1].upper() + text[1:]
