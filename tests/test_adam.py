"""engine.adam.step: torch's fused Adam kernel called directly makes the update Optimizer.step makes,
bit for bit, and falls back to Optimizer.step wherever it does not apply."""
from __future__ import annotations

import pytest
import torch

from engine import adam
from engine.distill import lr_factor, make_optimizer


def _grads(step: int, shapes, dtype):
    g = torch.Generator().manual_seed(step)
    return [torch.randn(s, generator=g, dtype=dtype) * (1 + step % 3) for s in shapes]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_direct_step_equals_optimizer_step_bit_for_bit(dtype):
    # two parameters (images and a label parameter), a cosine step size changing every step
    shapes = [(6, 1, 4, 4), (6, 3)]
    start = [torch.randn(s, generator=torch.Generator().manual_seed(9), dtype=dtype) for s in shapes]
    runs = []
    for direct in (True, False):
        params = [p.clone().requires_grad_(True) for p in start]
        opt = make_optimizer("adam", params, 0.05, torch.device("cpu"))
        calls = []
        real = opt.step
        opt.step = lambda *a, **k: calls.append(1) or real(*a, **k)
        for step in range(1, 31):
            for group in opt.param_groups:
                group["lr"] = 0.05 * lr_factor(step, 30, "cosine", warmup=3)
            opt.zero_grad(set_to_none=True)
            for p, g in zip(params, _grads(step, shapes, dtype)):
                p.grad = g
            if direct:
                adam.step(opt)
            else:
                opt.step()
        runs.append(([p.detach() for p in params], [dict(opt.state[p]) for p in params], len(calls)))
    (p1, s1, n1), (p2, s2, n2) = runs
    assert n1 == 1 and n2 == 30                 # the direct path went through step() for the first step only
    for a, b in zip(p1, p2):
        assert torch.equal(a, b)
    for a, b in zip(s1, s2):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert float(s1[0]["step"]) == 30


def test_parameters_without_a_gradient_are_left_alone():
    x, y = torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = make_optimizer("adam", [x, y], 0.1, torch.device("cpu"))
    x.grad, y.grad = torch.ones(3), torch.ones(2)
    adam.step(opt)
    y_before, y_state = y.detach().clone(), float(opt.state[y]["step"])
    x.grad, y.grad = torch.ones(3), None
    adam.step(opt)
    assert torch.equal(y.detach(), y_before) and float(opt.state[y]["step"]) == y_state
    assert float(opt.state[x]["step"]) == 2


@pytest.mark.parametrize("make", [
    lambda p: make_optimizer("sgd", p, 0.1, torch.device("cpu")),
    lambda p: torch.optim.Adam(p, lr=0.1),                              # not fused
    lambda p: torch.optim.Adam(p, lr=0.1, fused=True, amsgrad=True),
    lambda p: torch.optim.AdamW(p, lr=0.1, fused=True),
])
def test_other_optimisers_take_their_own_step(make):
    x = torch.ones(4, requires_grad=True)
    opt = make([x])
    x.grad = torch.ones(4)
    opt.step()                                                         # the state exists
    calls = []
    real = opt.step
    opt.step = lambda *a, **k: calls.append(1) or real(*a, **k)
    x.grad = torch.ones(4)
    adam.step(opt)
    assert calls == [1]


def test_step_hooks_are_honoured():
    x = torch.ones(4, requires_grad=True)
    opt = make_optimizer("adam", [x], 0.1, torch.device("cpu"))
    x.grad = torch.ones(4)
    opt.step()
    seen = []
    opt.register_step_pre_hook(lambda *a: seen.append("pre"))
    x.grad = torch.ones(4)
    adam.step(opt)
    assert seen == ["pre"]


def test_a_group_without_gradients_is_skipped_as_optimizer_step_skips_it():
    # a second param group none of whose parameters has a gradient: Optimizer.step leaves it alone;
    # the direct path once passed its empty lists to torch's kernel, which raised
    x, y = torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = torch.optim.Adam([{"params": [x]}, {"params": [y]}], lr=0.1, fused=True)
    x.grad, y.grad = torch.ones(3), torch.ones(2)
    opt.step()                                                         # the state exists for both
    x.grad, y.grad = torch.ones(3), None
    y_before = y.detach().clone()
    adam.step(opt)
    assert float(opt.state[x]["step"]) == 2 and float(opt.state[y]["step"]) == 1
    assert torch.equal(y.detach(), y_before)
