"""The objectives (engine.objectives): the DGKIP step's gap is the certificate's G_S (without its rounding
allowance); KIP's cached features give the loss the images give; the combined objective mixes the two."""
import numpy as np
import pytest
import torch

from engine.certify import gap_parts
from engine.config import DistillConfig
from engine.events import Stage
from engine.kernels import make_kernel
from engine.kip import kip_loss
from engine.losses import make_loss
from engine.objectives import CombinedObjective, DGKIPObjective, KIPObjective, StepShape, StepValue, make_objective
from engine.teacher import fit_teacher
from engine.tensors import to_nchw


def drain(gen):
    events = []
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        return stop.value, events


def problem(n=60, k=3, seed=0):
    """Images (n, 4, 4, 1) float32 NHWC, float64 NCHW copies, labels (n,)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4, 4, 1)).astype(np.float32)
    y = np.arange(n) % k
    return x, to_nchw(x).double(), torch.from_numpy(y)


def prepared(cfg, kernel, loss, dtype=torch.float64, tol=1e-10):
    """(objective of ``cfg`` prepared in ``dtype`` on problem()'s teacher, the teacher, x float64, Y)."""
    x_np, x64, y = problem()
    Y = loss.targets(y, 3)
    teacher, _ = drain(fit_teacher(kernel, loss, cfg.lam, x64, Y, tol=tol))
    objective = make_objective(cfg, kernel)
    drain(objective.prepare(teacher, x_np, Y, torch.device("cpu"), dtype, lambda: None))
    return objective, teacher, x64, Y


def fused_and_plain_steps(monkeypatch, cfg, kernel, loss, seed):
    """One step of ``cfg``'s objective at the same images (6 of problem()'s, moved off the real rows),
    with the FC kernels' hand-written path (fc.FUSED on) and then with autograd through the plain
    recursion (off): [(StepValue, x̃ with its .grad written)] in that order."""
    import engine.kernels.fc as fc
    x_np, x64, y = problem()
    Y = loss.targets(y, 3)
    teacher, _ = drain(fit_teacher(kernel, loss, cfg.lam, x64, Y, tol=1e-10))
    xs0 = x64[:6] + 0.05 * torch.randn(x64[:6].shape, generator=torch.Generator().manual_seed(seed), dtype=x64.dtype)
    steps = []
    for fused in (True, False):
        monkeypatch.setattr(fc, "FUSED", fused)
        objective = make_objective(cfg, kernel)
        drain(objective.prepare(teacher, x_np, Y, torch.device("cpu"), torch.float64, lambda: None))
        xs = xs0.clone().requires_grad_(True)
        value = objective.step(1, xs, Y[:6], None)
        value.backward(xs)
        steps.append((value, xs))
    return steps


def test_make_objective_follows_mode_and_kip_weight():
    k = make_kernel("ntk-fc")
    assert type(make_objective(DistillConfig(), k)) is DGKIPObjective
    assert type(make_objective(DistillConfig(mode="kip", loss="squared"), k)) is KIPObjective
    assert type(make_objective(DistillConfig(loss="squared", kip_weight=0.5), k)) is CombinedObjective


@pytest.mark.parametrize("alpha_mode", ["exact", "joint"])
def test_dgkip_step_gap_is_the_certificate_gap(alpha_mode):
    cfg = DistillConfig(loss="cross-entropy", lam=1e-2, alpha_mode=alpha_mode)
    kernel, loss = make_kernel("ntk-fc"), make_loss("cross-entropy")
    x_np, x64, y = problem()
    Y = loss.targets(y, 3)
    teacher, _ = drain(fit_teacher(kernel, loss, cfg.lam, x64, Y, tol=1e-10))
    objective = make_objective(cfg, kernel)
    _, events = drain(objective.prepare(teacher, x_np, Y, torch.device("cpu"), torch.float64, lambda: None))
    assert events == []
    # moved off the real rows: a synthetic image equal to a real one puts arccos at its clamp, where the
    # gradient path's fused kernel (engine.kernels.fc_fused) and the certificate's no-grad recursion
    # may round ~1e-9 apart
    xs = (x64[:6] + 0.05 * torch.randn(x64[:6].shape, generator=torch.Generator().manual_seed(1),
                                       dtype=x64.dtype)).requires_grad_(True)
    Ys = Y[:6]
    dual = torch.full_like(Ys, 0.1).requires_grad_(True) if alpha_mode == "joint" else None
    value = objective.step(1, xs, Ys, dual)
    A = objective.alpha_prev if dual is None else loss.alpha_from_param(Ys, dual).detach()
    with torch.no_grad():
        Z, Kss = teacher.scores_and_gram(xs)
        ref = gap_parts(loss, cfg.lam, teacher.w_norm2, Z, Ys, A, Kss, certified=False)
    assert value.fenchel_young == pytest.approx(ref.fenchel_young, rel=1e-12, abs=1e-15)
    assert value.kernel_match == pytest.approx(ref.kernel_match, rel=1e-12, abs=1e-15)
    assert value.gap == pytest.approx(value.fenchel_young + value.kernel_match, rel=1e-15)
    assert value.loss.item() == pytest.approx(value.gap, rel=1e-12)
    assert (value.grad is not None) == (alpha_mode == "exact")      # the FC step's gradient is written by hand
    value.backward(xs)
    assert xs.grad is not None and torch.isfinite(xs.grad).all() and xs.grad.abs().sum() > 0


@pytest.mark.parametrize("loss_name", ["cross-entropy", "hinge", "squared", "logistic", "squared-hinge"])
@pytest.mark.parametrize("kernel_name,depth", [("ntk-fc", 1), ("nngp-fc", 3)])
def test_dgkip_fc_step_node_equals_autograd_of_the_gap(loss_name, kernel_name, depth, monkeypatch):
    # the FC kernels' DGKIP step writes its gradient by hand, without a graph (engine.gap_step); the
    # reference is autograd through the same gap with the kernel's plain recursion (fc.FUSED off), at
    # the same exact dual α̃, on images (m, C, H, W)
    cfg = DistillConfig(loss=loss_name, lam=1e-2, ipc=2)
    steps = fused_and_plain_steps(monkeypatch, cfg, make_kernel(kernel_name, depth=depth), make_loss(loss_name), 2)
    for (value, _), fused in zip(steps, (True, False)):
        assert (value.grad is not None) == fused and (value.loss.grad_fn is None) == fused
    (l1, f1, k1, g1), (l2, f2, k2, g2) = [(v.loss.item(), v.fenchel_young, v.kernel_match, xs.grad) for v, xs in steps]
    assert l1 == pytest.approx(l2, rel=1e-10) and f1 == pytest.approx(f2, rel=1e-10, abs=1e-14)
    assert k1 == pytest.approx(k2, rel=1e-10, abs=1e-14)
    assert g1.shape == steps[0][1].shape and g1.dim() == 4 and g1.abs().sum() > 0
    torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-12 * float(g2.abs().max()))


def test_float32_hinge_step_solves_its_dual_in_float64_and_stays_feasible(monkeypatch):
    # the hinge's m-point dual in a float32 run: coordinate descent on a float64 copy of K_SS (FISTA in
    # float32 spent up to 400 iterations a step); α comes back in float32, inside the box
    import engine.solver as solver
    cfg = DistillConfig(loss="hinge", lam=1e-2)
    kernel, loss = make_kernel("ntk-fc"), make_loss("hinge")
    objective, _, x64, Y = prepared(cfg, kernel, loss, torch.float32, tol=1e-8)
    used = []
    real_cd = solver._cd_hinge

    def watched(K, *args):
        used.append(K.dtype)
        return (yield from real_cd(K, *args))

    monkeypatch.setattr(solver, "_cd_hinge", watched)
    xs = (x64[:6] + 0.05).float().requires_grad_(True)
    Ys = Y[:6].float()
    objective.step(1, xs, Ys, None)
    A = objective.alpha_prev
    assert used == [torch.float64] and A.dtype == torch.float32
    beta = A * Ys
    assert (beta >= 0).all() and (beta <= 1).all()
    with torch.no_grad():
        Kss = kernel(xs.detach().double())
    ref = solver.solve_dense(Kss, Ys.double(), loss, cfg.lam, tol=1e-9, max_iter=200)
    assert float((A.double() - ref.alpha).abs().max()) <= 1e-3


def test_kip_feature_cache_gives_the_loss_of_the_images():
    cfg = DistillConfig(mode="kip", loss="squared", lam=1e-3, kip_batch=1000, kernel="rf-fc",
                        kernel_params={"width": 32, "n_models": 2, "redraw_every": 0})
    kernel = make_kernel(cfg.kernel, **cfg.kernel_params)
    x_np, x64, y = problem()
    Y = make_loss("squared").targets(y, 3)
    objective = make_objective(cfg, kernel)
    _, events = drain(objective.prepare(None, x_np, Y, torch.device("cpu"), torch.float64, lambda: None))
    assert [e.name for e in events if isinstance(e, Stage)] == ["features"]     # φ(x_train) computed once
    xs, Ys = x64[:6].clone().requires_grad_(True), Y[:6]
    cached = objective.step(1, xs, Ys, None)
    direct = kip_loss(kernel, xs, Ys, x64, Y, cfg.lam, ridge=cfg.kip_ridge)   # the batch is every row
    assert cached.loss.item() == pytest.approx(direct.item(), rel=1e-10)
    assert np.isnan(cached.gap)


def test_combined_objective_mixes_gap_and_kip_loss():
    cfg = DistillConfig(loss="squared", lam=1e-2, kip_weight=0.25, kip_batch=1000)
    kernel, loss = make_kernel("ntk-fc"), make_loss("squared")
    combined, teacher, x64, Y = prepared(cfg, kernel, loss)
    x_np = problem()[0]
    pure = make_objective(cfg.replace(kip_weight=0.0), kernel)
    drain(pure.prepare(teacher, x_np, Y, torch.device("cpu"), torch.float64, lambda: None))
    xs, Ys = x64[:6].clone(), Y[:6]
    mixed, gap = combined.step(1, xs, Ys, None), pure.step(1, xs, Ys, None)
    kip = float(kip_loss(kernel, xs, Ys, x64, Y, cfg.lam, ridge="fixed"))
    assert mixed.gap == gap.gap                       # what is certified does not change
    assert float(mixed.loss) == pytest.approx(0.75 * gap.gap + 0.25 * kip, rel=1e-12)


@pytest.mark.parametrize("by_hand", [True, False])
def test_combined_objective_gradient_equals_autograd_of_the_mix(by_hand, monkeypatch):
    # the combined step's gradient, (1 − w) ∂G_S + w ∂KIP, given by hand (both parts hand-written) or
    # through autograd with the gap's hand-written gradient attached (StepValue.differentiable: the
    # KIP part on its autograd path), against autograd through the plain recursion (fc.FUSED off)
    import engine.objectives as objectives
    cfg = DistillConfig(loss="cross-entropy", lam=1e-2, kip_weight=0.3, kip_batch=1000)
    if not by_hand:
        monkeypatch.setattr(objectives, "kip_loss_and_grad", lambda *a, **k: None)
    steps = fused_and_plain_steps(monkeypatch, cfg, make_kernel("ntk-fc"), make_loss("cross-entropy"), 3)
    assert [v.grad is not None for v, _ in steps] == [by_hand, False]
    (l1, g1, d1), (l2, g2, d2) = [(float(v.loss.detach()), v.gap, xs.grad) for v, xs in steps]
    assert l1 == pytest.approx(l2, rel=1e-10) and g1 == pytest.approx(g2, rel=1e-10)
    assert d1.abs().sum() > 0
    torch.testing.assert_close(d1, d2, rtol=1e-9, atol=1e-12 * float(d2.abs().max()))


@pytest.mark.parametrize("dense_max", [256, 10])
def test_exact_dual_is_warm_started_from_the_extrapolation_of_the_last_two(dense_max, monkeypatch):
    # a smooth loss's m-point dual starts from 2 α_{t−1} − α_{t−2} (certified first where Newton-CG
    # solves it: m·C = 18 above DENSE_NEWTON_MAX); whatever the start, every α is the exact dual: its
    # certified relative gap ≤ 1e-6, and it matches a cold solve
    import engine.objectives as objectives
    import engine.solver as solver
    monkeypatch.setattr(solver, "DENSE_NEWTON_MAX", dense_max)
    monkeypatch.setattr(objectives, "DENSE_NEWTON_MAX", dense_max)
    cfg = DistillConfig(loss="cross-entropy", lam=1e-2)
    kernel, loss = make_kernel("ntk-fc"), make_loss("cross-entropy")
    objective, teacher, x64, Y = prepared(cfg, kernel, loss)
    calls = []
    real = objectives.solve_dense

    def watched(K, Ys, loss_, lam, **kw):
        sol = real(K, Ys, loss_, lam, **kw)
        calls.append((kw["alpha0"], kw["certify_start"], sol))
        return sol

    monkeypatch.setattr(objectives, "solve_dense", watched)
    # images that drift smoothly, as a run's steps move them
    drift = 0.02 * torch.randn(x64[:6].shape, generator=torch.Generator().manual_seed(5), dtype=x64.dtype)
    for step in range(5):
        xs = x64[:6] + (step + 1) * drift
        objective.step(step + 1, xs.clone().requires_grad_(True), Y[:6], None)
    assert calls[0][0] is None and calls[1][0] is calls[0][2].alpha and not calls[1][1]
    for t in range(2, 5):
        start, certified, _ = calls[t]
        assert certified == (dense_max < 18)  # direct Newton systems have no inner tolerance to set
        torch.testing.assert_close(start, 2 * calls[t - 1][2].alpha - calls[t - 2][2].alpha, rtol=0, atol=1e-15)
    with torch.no_grad():
        Kss = kernel(xs)
    cold = real(Kss, Y[:6], loss, cfg.lam, tol=1e-12, max_iter=50)
    last = calls[-1][2]
    assert last.gap <= 1e-6 * abs(last.primal)
    assert ("CG" in last.solver) == (dense_max < 18) and last.iterations == 1    # one Newton step
    torch.testing.assert_close(last.alpha, cold.alpha, rtol=0, atol=1e-5)


def test_step_value_accumulates_a_given_gradient_as_autograd_does():
    xs = torch.ones(2, 3, requires_grad=True)
    value = StepValue(torch.tensor(1.5), grad=torch.full((2, 3), 2.0))
    value.backward(xs)
    value.backward(xs)
    assert torch.equal(xs.grad, torch.full((2, 3), 4.0))
    (3.0 * value.differentiable(xs)).backward()
    assert torch.equal(xs.grad, torch.full((2, 3), 10.0))


def test_cost_model_counts_the_rows_each_objective_pairs():
    kernel = make_kernel("ntk-fc")
    z = StepShape(n=5000, k=10, m=100, chw=(1, 28, 28), teacher_rows=3000, p=None, work_dtype=torch.float32)
    dgkip = make_objective(DistillConfig(), kernel)
    kip = make_objective(DistillConfig(mode="kip", loss="squared", kip_batch=400), kernel)
    both = make_objective(DistillConfig(loss="squared", kip_weight=0.5, kip_batch=400), kernel)
    assert (dgkip.step_rows(z), kip.step_rows(z), both.step_rows(z)) == (3000, 400, 3400)
    assert dgkip.working_parts(z) == [] and [n for n, _ in kip.working_parts(z)] == ["KIP working copy of x_train"]
    # the step graph grows with the rows paired: more rows, more bytes, in that order
    assert kip.graph_bytes(z) < dgkip.graph_bytes(z) < both.graph_bytes(z)
