"""KIP's ridge conventions (issue 17): "trace" (published KIP, ρ = λ·tr(K_SS)/m) and "fixed" (ρ = λ·m).

The loss is checked against an independent numpy closed form; the option round-trips through the
config, the CLI and the export; a version-1 recipe (written before the option) reads back as "fixed"."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.config import ConfigError, DistillConfig
from engine.export import load_distilled
from engine.kernels import make_kernel
from engine.kip import kip_loss, kip_loss_and_grad


def _numpy_ntk_fc_depth1(a: np.ndarray, b: np.ndarray, w_var: float = 2.0, b_var: float = 0.01) -> np.ndarray:
    """NTK of Dense(W_std = √2, b_std = 0.1) → ReLU → Dense (same std) in the stax convention, from the
    arc-cosine formulas (Cho & Saul), written independently of engine.kernels."""
    d = a.shape[1]
    s_ab = w_var * a @ b.T / d + b_var
    s_aa = w_var * (a * a).sum(1) / d + b_var
    s_bb = w_var * (b * b).sum(1) / d + b_var
    norm = np.sqrt(np.outer(s_aa, s_bb))
    cos = np.clip(s_ab / norm, -1.0, 1.0)
    theta = np.arccos(cos)
    nngp1 = norm * (np.sin(theta) + (np.pi - theta) * cos) / (2 * np.pi)
    dot1 = (np.pi - theta) / (2 * np.pi)
    return w_var * nngp1 + b_var + s_ab * w_var * dot1


@pytest.mark.parametrize("ridge", ["trace", "fixed"])
def test_kip_loss_equals_the_numpy_closed_form(ridge):
    rng = np.random.default_rng(0)
    xs, xb = rng.normal(size=(6, 20)), rng.normal(size=(15, 20))
    Ys, Yb = rng.normal(size=(6, 3)), rng.normal(size=(15, 3))
    lam = 0.3                                  # large enough that the two conventions differ visibly
    kernel = make_kernel("ntk-fc", depth=1)
    Kss, Kbs = _numpy_ntk_fc_depth1(xs, xs), _numpy_ntk_fc_depth1(xb, xs)
    assert np.allclose(kernel(torch.from_numpy(xs)).numpy(), Kss, rtol=1e-10, atol=1e-12)
    rho = lam * np.trace(Kss) / 6 if ridge == "trace" else lam * 6
    want = 0.5 * ((Yb - Kbs @ np.linalg.solve(Kss + rho * np.eye(6), Ys)) ** 2).sum(1).mean()
    got = kip_loss(kernel, torch.from_numpy(xs), torch.from_numpy(Ys), torch.from_numpy(xb), torch.from_numpy(Yb),
                   lam, ridge=ridge).item()
    assert got == pytest.approx(want, rel=1e-12)
    other = kip_loss(kernel, torch.from_numpy(xs), torch.from_numpy(Ys), torch.from_numpy(xb), torch.from_numpy(Yb),
                     lam, ridge="fixed" if ridge == "trace" else "trace").item()
    assert abs(other - want) > 1e-3 * want      # the option changes the loss


def test_trace_ridge_gradient_flows_through_the_trace():
    """Published KIP differentiates through tr(K_SS): our gradient matches finite differences of the loss."""
    rng = np.random.default_rng(1)
    kernel = make_kernel("ntk-fc", depth=1)
    xs = torch.from_numpy(rng.normal(size=(4, 8))).requires_grad_(True)
    xb, Ys, Yb = (torch.from_numpy(rng.normal(size=s)) for s in ((10, 8), (4, 2), (10, 2)))
    kip_loss(kernel, xs, Ys, xb, Yb, 0.5, ridge="trace").backward()
    e = torch.zeros_like(xs)
    e[1, 3] = 1e-6
    with torch.no_grad():
        fd = (kip_loss(kernel, xs + e, Ys, xb, Yb, 0.5, ridge="trace")
              - kip_loss(kernel, xs - e, Ys, xb, Yb, 0.5, ridge="trace")) / 2e-6
    assert xs.grad[1, 3].item() == pytest.approx(fd.item(), rel=1e-5)


@pytest.mark.parametrize("name,depth", [("ntk-fc", 1), ("nngp-fc", 1), ("ntk-fc", 3), ("nngp-fc", 2)])
@pytest.mark.parametrize("ridge", ["trace", "fixed"])
def test_fc_kernels_hand_written_gradient_equals_autograd_of_the_unfused_recursion(name, depth, ridge, monkeypatch):
    # the FC kernels' KIP loss is one node whose forward writes the gradient (engine.kip._FCKIPLoss,
    # engine.kip.fc_kip_grads);
    # the reference is autograd through the kernel's plain recursion (fc.FUSED off), on images
    # (m, C, H, W) with learnt labels
    import engine.kernels.fc as fc
    rng = np.random.default_rng(2)
    kernel = make_kernel(name, depth=depth)
    xs0, Ys0 = rng.normal(size=(5, 1, 3, 4)), rng.normal(size=(5, 3))
    xb, Yb = torch.from_numpy(rng.normal(size=(17, 1, 3, 4))), torch.from_numpy(rng.normal(size=(17, 3)))
    results = []
    for fused in (True, False):
        monkeypatch.setattr(fc, "FUSED", fused)
        xs, Ys = torch.from_numpy(xs0).requires_grad_(True), torch.from_numpy(Ys0).requires_grad_(True)
        loss = kip_loss(kernel, xs, Ys, xb, Yb, 0.3, ridge=ridge)
        assert ("FCKIPLoss" in type(loss.grad_fn).__name__) == fused
        results.append((loss.detach(), *torch.autograd.grad(loss, [xs, Ys])))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert results[0][1].shape == xs0.shape
    # the run's step (fixed labels): the same loss and image gradient, given without a graph
    monkeypatch.setattr(fc, "FUSED", True)
    xs = torch.from_numpy(xs0).requires_grad_(True)
    loss, grad = kip_loss_and_grad(kernel, xs, torch.from_numpy(Ys0), xb, Yb, 0.3, ridge=ridge)
    assert loss.grad_fn is None and grad.shape == xs0.shape
    torch.testing.assert_close(loss, results[1][0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, results[1][1], rtol=1e-10, atol=1e-12)


def test_kip_loss_and_grad_declines_where_autograd_is_needed():
    # learnt labels, explicit features, and kernels other than the FC network ones go through kip_loss
    rng = np.random.default_rng(4)
    xs = torch.from_numpy(rng.normal(size=(4, 6))).requires_grad_(True)
    Ys, xb, Yb = (torch.from_numpy(rng.normal(size=s)) for s in ((4, 2), (9, 6), (9, 2)))
    fc_kernel = make_kernel("ntk-fc", depth=1)
    assert kip_loss_and_grad(fc_kernel, xs, Ys, xb, Yb, 0.1) is not None
    assert kip_loss_and_grad(fc_kernel, xs, Ys.clone().requires_grad_(True), xb, Yb, 0.1) is None
    assert kip_loss_and_grad(make_kernel("rbf"), xs, Ys, xb, Yb, 0.1) is None
    rf = make_kernel("rf-fc", width=8, n_models=1, redraw_every=0)
    assert kip_loss_and_grad(rf, xs, Ys, None, Yb, 0.1, fb=rf.features(xb)) is None
    with torch.no_grad():
        assert kip_loss_and_grad(fc_kernel, xs, Ys, xb, Yb, 0.1) is None


def test_fc_kip_node_keeps_to_the_kernel_tile_budget():
    # a batch whose kernel block exceeds the tile budget takes the tiled autograd path (same values)
    rng = np.random.default_rng(3)
    small = make_kernel("ntk-fc", depth=1, tile_bytes=4096)
    xs = torch.from_numpy(rng.normal(size=(6, 8))).requires_grad_(True)
    xb, Ys, Yb = (torch.from_numpy(rng.normal(size=s)) for s in ((300, 8), (6, 2), (300, 2)))
    tiled_loss = kip_loss(small, xs, Ys, xb, Yb, 0.1)
    assert "FCKIPLoss" not in type(tiled_loss.grad_fn).__name__
    whole = kip_loss(make_kernel("ntk-fc", depth=1), xs, Ys, xb, Yb, 0.1)
    assert "FCKIPLoss" in type(whole.grad_fn).__name__
    torch.testing.assert_close(tiled_loss, whole, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.autograd.grad(tiled_loss, xs)[0], torch.autograd.grad(whole, xs)[0],
                               rtol=1e-10, atol=1e-14)


def test_kip_ridge_config_default_validation_and_old_recipes():
    assert DistillConfig().kip_ridge == "trace"
    with pytest.raises(ConfigError, match="kip_ridge"):
        DistillConfig(kip_ridge="mean").validate()
    cfg = DistillConfig(mode="kip", loss="squared", kip_ridge="fixed")
    assert DistillConfig.from_json(cfg.to_json()) == cfg
    # a recipe written before the option (schema version 1, no field) ran KIP with λ·m: it reads as "fixed"
    old = DistillConfig(mode="kip", loss="squared").to_dict()
    old.pop("kip_ridge")
    old["schema_version"] = 1
    assert DistillConfig.from_dict(old).kip_ridge == "fixed"
    # a hand-written partial config (no schema version) gets the current default
    assert DistillConfig.from_dict({"mode": "kip", "loss": "squared"}).kip_ridge == "trace"


def test_cli_flag_runs_exports_and_an_old_export_still_loads(tmp_path, capsys):
    args = ["distill", "--data", "sample", "--steps", "3", "--ipc", "1", "--mode", "kip", "--loss", "squared",
            "--max-per-class", "20", "--kip-batch", "50"]
    for ridge in ("trace", "fixed"):
        out = tmp_path / ridge
        assert main(args + ["--out", str(out), "--kip-ridge", ridge]) == 0
        capsys.readouterr()
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["config"]["kip_ridge"] == ridge and manifest["config"]["kip_batch"] == 50
        assert load_distilled(out).config.kip_ridge == ridge
        m = manifest["metrics"]
        assert m["kip_ridge"] == ridge and 0.0 <= m["kip_test_accuracy"] <= 1.0
        if ridge == "fixed":          # KRR with λ·m is the certified squared-loss model itself
            assert m["kip_test_accuracy"] == pytest.approx(m["distilled_test_accuracy"], abs=1e-12)
    # an export made before the option: its manifest's config has schema version 1 and no kip_ridge
    path = tmp_path / "trace" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["config"].pop("kip_ridge")
    manifest["config"]["schema_version"] = 1
    path.write_text(json.dumps(manifest))
    assert load_distilled(tmp_path / "trace").config.kip_ridge == "fixed"
    with pytest.raises(SystemExit) as exc:            # argparse refuses an unknown convention
        main(["distill", "--data", "sample", "--out", str(tmp_path / "x"), "--kip-ridge", "mean"])
    assert exc.value.code == 2


PEER_PYTHON = os.environ.get("DGKIP_PEER_PYTHON", "/work/exp/ntvenv/bin/python")
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.mark.skipif(not Path(PEER_PYTHON).is_file() or not (DATASETS / "mnist-train.npz").is_file()
                    or not (DATASETS / "mnist-test.npz").is_file(),
                    reason="needs MNIST in ../shared/datasets and a Python with neural-tangents (DGKIP_PEER_PYTHON)")
def test_peer_reference_sees_our_kernel_data_and_loss(tmp_path):
    """engine.bench.kip_peer on a tiny MNIST pool: stax's kernels equal ours, and the peer's first KIP loss —
    on the same pool, targets and initial images — equals ours under both ridge conventions."""
    if subprocess.run([PEER_PYTHON, "-c", "import neural_tangents"], capture_output=True).returncode:
        pytest.skip("the peer Python lacks neural-tangents")
    from engine.bench.kip_peer import compare

    report = compare(PEER_PYTHON, DATASETS, tmp_path, steps=3, ipcs=[1], lams=[1e-2], depth=1, per_class=20)
    assert all(k["max_rel_diff"] < 1e-10 for k in report["kernels"])
    assert [r["ridge"] for r in report["runs"]] == ["trace", "fixed"]
    for r in report["runs"]:
        assert r["ours_loss0"] == pytest.approx(r["peer_loss0"], rel=1e-4)     # float32 on both sides
    assert report["runs"][0]["ours_loss0"] != pytest.approx(report["runs"][1]["ours_loss0"], rel=1e-4)
    assert (tmp_path / "kip_peer.md").read_text().count("\n| 1 |") == 2
