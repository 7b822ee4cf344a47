"""The optimiser step of a distillation run without ``torch.optim``'s per-call Python.

``torch.optim.Adam(fused=True).step()`` spends most of its time around its one kernel: in an IPC-1 KIP
step on the CPU (10 images of 28 × 28, one thread) the call took 119–136 µs, of which the kernel
(``torch._fused_adam_``) and the step counter's increment took about 25; the rest is the profiler
scope, grad-mode switching, the graph-capture check and the grouping of tensors by device and dtype
that every call repeats (8–9 % of a 1.5 ms step). :func:`step` calls the same two ops directly with
the group's settings, so the update is the one ``Optimizer.step`` makes, bit for bit
(tests/test_adam.py); anything else (SGD, AMSGrad, AdamW, the first step, which creates the state,
parameters on several devices or of several dtypes) goes through ``optimizer.step()``.
"""
from __future__ import annotations

import torch

_FUSED_ADAM = getattr(torch, "_fused_adam_", None)


def step(optimizer: torch.optim.Optimizer) -> None:
    """One update of ``optimizer``'s parameters from their ``.grad`` (as ``optimizer.step()``)."""
    groups = _direct_groups(optimizer)
    if groups is None:
        optimizer.step()
        return
    with torch.no_grad():                     # in place on leaves that require gradients
        _update(groups, optimizer.state)


def _update(groups: list[tuple[dict, list[torch.Tensor]]], states) -> None:
    for group, params in groups:
        state = [states[p] for p in params]
        steps = [s["step"] for s in state]
        torch._foreach_add_(steps, 1)
        beta1, beta2 = group["betas"]
        _FUSED_ADAM(params, [p.grad for p in params], [s["exp_avg"] for s in state],
                    [s["exp_avg_sq"] for s in state], [], steps, amsgrad=False, lr=group["lr"], beta1=beta1,
                    beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                    maximize=group["maximize"], grad_scale=None, found_inf=None)


def _direct_groups(optimizer: torch.optim.Optimizer) -> list[tuple[dict, list[torch.Tensor]]] | None:
    """[(group, its parameters with a gradient)] where :func:`step` may call the fused kernel itself:
    a fused Adam (not AdamW) without AMSGrad, step hooks or a gradient scaler, a float ``lr`` and
    betas, state already made for every such parameter, all on one device in one dtype; else None."""
    from torch.optim import optimizer as base
    if (_FUSED_ADAM is None or type(optimizer) is not torch.optim.Adam or getattr(optimizer, "grad_scale", None) is not None
            or optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
            or base._global_optimizer_pre_hooks or base._global_optimizer_post_hooks):
        return None
    groups, kinds = [], set()
    for group in optimizer.param_groups:
        if (not group["fused"] or group["amsgrad"] or group["differentiable"] or group["capturable"]
                or group.get("decoupled_weight_decay") or isinstance(group["lr"], torch.Tensor)
                or any(isinstance(b, torch.Tensor) for b in group["betas"])):
            return None
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            state = optimizer.state.get(p)
            if not state or p.grad.is_sparse or p.is_complex():
                return None
            kinds.add((p.device, p.dtype))
        if params:                             # a group without gradients takes no step
            groups.append((group, params))
    return groups if len(kinds) == 1 else None
