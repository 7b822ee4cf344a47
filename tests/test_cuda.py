"""The CUDA path against the CPU's float64 results: kernels, the fused FC node's gradient, the solvers,
and whole runs (bound checked, export reopened). Skipped without a CUDA GPU (CI has none); run on a
GPU machine with ``python -m pytest tests/test_cuda.py``. First run: an H200, 2026-12-04 (docs/results.md)."""
from __future__ import annotations

import pytest
import torch

from engine.config import DistillConfig
from engine.distill import run
from engine.events import Done
from engine.export import load_distilled, save_result
from engine.kernels import make_kernel
from engine.kernels.fc import FCNetworkKernel
from engine.losses import make_loss
from engine.solver import solve, solve_dense

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

KERNELS = [("linear", {}, (40, 1, 28, 28)), ("rbf", {"bandwidth": 30.0}, (40, 1, 28, 28)),
           ("nngp-fc", {"depth": 1}, (40, 1, 28, 28)), ("ntk-fc", {"depth": 3}, (40, 1, 28, 28)),
           ("nngp-conv", {"depth": 2}, (10, 1, 12, 12)), ("ntk-conv", {"depth": 2}, (10, 3, 8, 8)),
           ("rf-fc", {}, (40, 1, 28, 28))]


@pytest.mark.parametrize("name,params,shape", KERNELS)
def test_kernels_on_cuda_agree_with_cpu_float64(name, params, shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    y = torch.randn(shape[0] // 2, *shape[1:], generator=g, dtype=torch.float64)
    kernel = make_kernel(name, **params)
    for a, b in ((x, y), (x, None)):
        ref = kernel(a, b)
        scale = float(ref.abs().max())
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 3e-6)):
            got = kernel(a.to("cuda", dtype), None if b is None else b.to("cuda", dtype))
            assert got.device.type == "cuda" and got.dtype == dtype
            assert float((got.double().cpu() - ref).abs().max()) <= tol * scale, (name, dtype, b is None)


@pytest.mark.parametrize("ntk", [False, True])
def test_fused_fc_node_on_cuda_against_cpu_autograd(ntk):
    """Value and gradient of the hand-written node against autograd through the plain recursion (CPU,
    float64), three calls in a row (the fixed-operand cache must keep nothing wrong on CUDA)."""
    kernel = FCNetworkKernel(depth=3, ntk=ntk)
    g = torch.Generator().manual_seed(1)
    a, b, w = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((10, 784), (300, 784), (10, 300)))
    ac = a.clone().requires_grad_(True)
    ref = kernel._recursion(*kernel._first(ac, b))
    (ref * w).sum().backward()
    ref = ref.detach()
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 3e-6)):
        bc, wc = b.to("cuda", dtype), w.to("cuda", dtype)
        for _ in range(3):
            ag = a.to("cuda", dtype).clone().requires_grad_(True)
            value = kernel(ag, bc)
            (value * wc).sum().backward()
            assert float((value.detach().double().cpu() - ref).abs().max()) <= tol * float(ref.abs().max())
            assert float((ag.grad.double().cpu() - ac.grad).abs().max()) <= tol * float(ac.grad.abs().max())


@pytest.mark.parametrize("name", ["squared", "logistic", "squared-hinge", "cross-entropy", "hinge"])
def test_solvers_on_cuda_reach_the_cpu_optimum(name):
    """Newton-CG (smooth) and FISTA (the hinge on a GPU; coordinate descent on the CPU) in float64 on
    CUDA reach the CPU's certified optimum; the certificate stays a valid bound."""
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 4, (400,), generator=g)
    X = torch.randn(400, 20, generator=g, dtype=torch.float64) + 1.5 * torch.eye(4, 20, dtype=torch.float64)[labels]
    K = X @ X.T / 20
    loss = make_loss(name)
    Y = loss.targets(labels, 4)
    cpu = solve_dense(K, Y, loss, 1e-2, tol=1e-10, max_iter=500)
    Kc, Yc = K.cuda(), Y.cuda()
    sol = solve(lambda V: Kc @ V, Yc, loss, 1e-2, tol=1e-9, max_iter=500, dense=Kc)
    assert sol.alpha.device.type == "cuda"
    assert sol.primal == pytest.approx(cpu.primal, rel=1e-8) and sol.rel_gap <= 1e-9
    assert sol.primal - sol.gap <= cpu.primal * (1 + 1e-12)          # the dual bound stays below the optimum


@pytest.mark.parametrize("name", ["cross-entropy", "hinge", "squared"])
def test_small_problems_on_cuda_are_solved_on_the_cpu_in_float64(name):
    """A distillation step's m-point problem on the GPU comes back on the GPU in its dtype, solved the
    CPU's way (one exact Newton step from a neighbour's optimum; coordinate descent for the hinge)."""
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 10, (10,), generator=g)
    X = torch.randn(10, 784, generator=g, dtype=torch.float64) + 1.5 * torch.eye(10, 784, dtype=torch.float64)[labels]
    loss = make_loss(name)
    Y = loss.targets(labels, 10, dtype=torch.float32).cuda()
    K = (X @ X.T / 784).float().cuda()
    sol = solve_dense(K, Y, loss, 1e-3, tol=1e-6, max_iter=8)
    assert sol.alpha.device.type == "cuda" and sol.alpha.dtype == torch.float32
    assert ("coordinate descent" if name == "hinge" else "newton (") in sol.solver
    K2 = (K.double() * 1.001).float()
    again = solve_dense(K2, Y, loss, 1e-3, tol=1e-6, max_iter=8, alpha0=sol.alpha, certify_start=False)
    assert again.rel_gap <= 1e-6
    if name != "hinge":
        assert again.iterations == 1, again.solver


@pytest.mark.parametrize("mode,loss", [("dgkip", "cross-entropy"), ("dgkip", "hinge"), ("kip", "squared")])
def test_run_on_cuda_matches_the_cpu_run_and_its_bound_holds(mode, loss, tmp_path):
    """The sample digits, 60 steps, on CUDA and on the CPU: the same accuracy (to one test image of
    359), gaps within 1e-4 relative, the measured distance to the teacher under the certified radius,
    and the CUDA run's export reopens."""
    metrics = {}
    for device in ("cuda", "cpu"):
        cfg = DistillConfig(data="sample", device=device, steps=60, eval_every=0, mode=mode, loss=loss).validate()
        done = [e for e in run(cfg) if isinstance(e, Done)][-1]
        metrics[device] = done.metrics
        if device == "cuda":
            save_result(done.result, tmp_path / "cuda")
    c, p = metrics["cuda"], metrics["cpu"]
    assert abs(c["distilled_test_accuracy"] - p["distilled_test_accuracy"]) <= 1 / 359 + 1e-12
    assert c["gap"] == pytest.approx(p["gap"], rel=1e-4)
    assert c["distance_to_teacher"] <= c["radius"]
    reopened = load_distilled(tmp_path / "cuda")
    assert reopened.images.shape[0] == 10
