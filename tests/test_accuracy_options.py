"""Issue 17 item 4: k-means initialisation, the step-size schedule and the combined objective
(1 − kip_weight)·gap + kip_weight·KIP loss."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.config import ConfigError, DistillConfig
from engine.data import sample_dataset
from engine.distill import _initial_images, lr_factor, make_optimizer, prepare_dataset, run
from engine.events import Done, Snapshot


def _pool(seed=0):
    cfg = DistillConfig(data="sample", max_per_class=20, seed=seed)
    ds = prepare_dataset(cfg, sample_dataset(seed=seed, holdout_fraction=cfg.holdout_fraction))
    x = ds.x_train.astype(np.float32) / 255.0
    return x, ds.y_train.astype(np.int64)


def test_kmeans_init_is_deterministic_and_per_class():
    x, y = _pool()
    cfg = DistillConfig(data="sample", init="kmeans", ipc=3, seed=4)
    a, la = _initial_images(cfg, x, y, 10)
    b, lb = _initial_images(cfg, x, y, 10)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    classes = np.unique(y)
    assert np.array_equal(la, np.repeat(classes, 3))              # grouped by class, ipc each
    for c in classes:                                             # each centre is inside its class's hull
        own = x[y == c].reshape((y == c).sum(), -1)
        for centre in a[la == c].reshape(3, -1):
            assert own.min(0).min() - 1e-6 <= centre.min() and centre.max() <= own.max(0).max() + 1e-6
    one, l1 = _initial_images(cfg.replace(ipc=1), x, y, 10)       # one centre per class = the class mean
    for c in classes:
        np.testing.assert_allclose(one[l1 == c][0], x[y == c].mean(0), atol=1e-5)
    other, _ = _initial_images(cfg.replace(seed=5), x, y, 10)
    assert not np.array_equal(a, other)                           # the seed is what makes it deterministic


@pytest.mark.parametrize("step, steps, schedule, warmup, expected", [
    (1, 100, "constant", 0, 1.0), (100, 100, "constant", 0, 1.0),
    (1, 100, "cosine", 0, 1.0), (51, 100, "cosine", 0, 0.5), (100, 100, "cosine", 0, 0.5 * (1 + math.cos(math.pi * 0.99))),
    (1, 100, "cosine", 10, 0.1), (10, 100, "cosine", 10, 1.0), (11, 100, "cosine", 10, 1.0),
    (56, 100, "cosine", 10, 0.5), (5, 20, "constant", 10, 0.5), (15, 20, "constant", 10, 1.0)])
def test_lr_schedule_matches_its_closed_form(step, steps, schedule, warmup, expected):
    assert lr_factor(step, steps, schedule, warmup) == pytest.approx(expected, abs=1e-12)


def test_cosine_schedule_decreases_and_stays_positive():
    f = [lr_factor(s, 300, "cosine", 0) for s in range(1, 301)]
    assert all(a > b for a, b in zip(f, f[1:])) and f[-1] > 0


def _config(**kw) -> DistillConfig:
    base = dict(data="sample", loss="squared", kernel="ntk-fc", ipc=2, max_per_class=20, lam=1e-2, steps=1,
                optimizer="sgd", lr=0.5, eval_every=0, snapshot_every=0, dtype="float64")
    return DistillConfig(**{**base, **kw})


def _images_after(**kw):
    done = [e for e in run(_config(**kw)) if isinstance(e, Done)][-1]
    return done.result.images.astype(np.float64)


def _first_snapshot(**kw):
    return next(e for e in run(_config(snapshot_every=1, **kw)) if isinstance(e, Snapshot)).images.astype(np.float64)


def test_warm_up_and_schedule_set_the_step_size_the_optimiser_uses():
    # snapshots are float32 pixels clipped to [0, 1] (an affine map of the preprocessed images): compare
    # a step large against their rounding where nothing was clipped
    x0 = _first_snapshot(lr=1e-14)                              # ≈ the initial images
    full = _first_snapshot(steps=5, lr=1e3) - x0                # SGD step 1 at lr
    warm = _first_snapshot(steps=5, lr=1e3, warmup_steps=4) - x0  # step 1 of a 4-step warm-up: lr / 4
    cosine = _first_snapshot(steps=5, lr=1e3, lr_schedule="cosine") - x0   # the cosine's first step: lr
    inside = (x0 > 0.02) & (x0 < 0.98) & (x0 + full > 0.02) & (x0 + full < 0.98)
    full, warm, cosine = full[inside], warm[inside], cosine[inside]
    scale = np.abs(full).max()
    assert inside.sum() > 100 and scale > 0.01
    np.testing.assert_allclose(warm, full / 4, atol=1e-3 * scale)
    assert np.abs(warm - full / 2).max() > 0.05 * scale          # not some other fraction
    np.testing.assert_allclose(cosine, full, atol=1e-4 * scale)


def test_kip_weight_interpolates_between_dgkip_and_kip_steps():
    # one SGD step from the same images, large against the float32 rounding of the exported images
    x0 = _images_after(lr=1e-14)
    dg = _images_after(lr=50.0) - x0                              # pure DGKIP (kip_weight 0, the default)
    assert np.array_equal(_images_after(lr=50.0, kip_weight=0.0) - x0, dg)
    kip = _images_after(lr=50.0, mode="kip", kip_ridge="fixed") - x0   # KIP mode (its fixed ridge: the one mixed in), same images, whole pool
    one = _images_after(lr=50.0, kip_weight=1.0) - x0
    half = _images_after(lr=50.0, kip_weight=0.5) - x0
    scale = max(np.abs(dg).max(), np.abs(kip).max())
    assert scale > 1e-2
    assert np.abs(dg - kip).max() > 0.1 * scale                   # the two methods move the images differently
    np.testing.assert_allclose(one, kip, atol=1e-4 * scale)       # w = 1: KIP's step
    np.testing.assert_allclose(half, 0.5 * (dg + kip), atol=1e-4 * scale)   # linear in w (one SGD step)
    near = _images_after(lr=50.0, kip_weight=0.99) - x0           # w → 1 tends to KIP's step
    assert np.abs(near - kip).max() < np.abs(half - kip).max() / 10


def test_new_settings_are_validated():
    with pytest.raises(ConfigError, match="kip_weight"):
        DistillConfig(kip_weight=0.5, loss="cross-entropy").validate()
    with pytest.raises(ConfigError, match="kip_weight"):
        DistillConfig(kip_weight=0.5, mode="kip", loss="squared").validate()
    with pytest.raises(ConfigError, match="kip_weight"):
        DistillConfig(kip_weight=1.5, loss="squared").validate()
    with pytest.raises(ConfigError, match="lr_schedule"):
        DistillConfig(lr_schedule="step").validate()
    with pytest.raises(ConfigError, match="warmup_steps"):
        DistillConfig(warmup_steps=200, steps=200).validate()
    DistillConfig(kip_weight=0.3, loss="squared", lr_schedule="cosine", warmup_steps=10).validate()


def test_cli_flags_reach_the_config(tmp_path):
    from engine.cli import main

    path = tmp_path / "c.json"
    assert main(["distill", "--data", "sample", "--out", str(tmp_path / "o"), "--loss", "squared", "--lr-schedule",
                 "cosine", "--warmup-steps", "2", "--kip-weight", "0.25", "--steps", "3", "--save-config", str(path)]) == 0
    cfg = DistillConfig.load(path)
    assert (cfg.lr_schedule, cfg.warmup_steps, cfg.kip_weight) == ("cosine", 2, 0.25)
    assert main(["distill", "--data", "sample", "--out", str(tmp_path / "p"), "--kip-weight", "2"]) != 0


@pytest.mark.parametrize("name", ["adam", "sgd"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_optimizer_takes_the_default_implementations_steps(name, dtype):
    # the run's optimiser (torch's fused kernel on the CPU) against torch's default (multi-tensor) one,
    # on images and labels of a run's shapes, with the step size changed mid-way as a schedule does
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(10, 1, 8, 8, generator=g, dtype=dtype), torch.randn(10, 3, generator=g, dtype=dtype)]
    ours = [p.clone().requires_grad_(True) for p in start]
    ref = [p.clone().requires_grad_(True) for p in start]
    opt = make_optimizer(name, ours, 0.05, torch.device("cpu"))
    assert opt.defaults["fused"] is True
    ref_opt = (torch.optim.Adam if name == "adam" else torch.optim.SGD)(ref, lr=0.05)
    for step in range(30):
        if step == 15:
            for o in (opt, ref_opt):
                o.param_groups[0]["lr"] = 0.01
        for a, b in zip(ours, ref):
            grad = torch.randn(a.shape, generator=g, dtype=dtype)
            a.grad, b.grad = grad.clone(), grad.clone()
        opt.step()
        ref_opt.step()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b, s in zip(ours, ref, start):
        assert (a - s).abs().max() > 0.1                       # the parameters moved
        torch.testing.assert_close(a, b, rtol=0, atol=tol)
