"""Transfer evaluation: networks, training recipes, event stream, control, label rule, baselines."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.baselines import kmeans_centres, random_subset
from engine.control import Cancelled, RunControl
from engine.data import DatasetError
from engine.transfer.networks import make_network
from engine.transfer.training import (RECIPES, TransferProgress, TransferScore, TransferSummary, _augment, _batches,
                                      run_transfer, label_loss_for, resolve_recipe, seeded_network,
                                      train_and_test)

FAST = {"epochs": 10, "batch_size": 8}


def left_right(n: int, seed: int, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two separable classes of noisy 8×8 images (N, 8, 8, channels): bright left half (0) or right half (1)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(0.0, 1.0, (n, 8, 8, channels)).astype(np.float32)
    x[y == 0, :, :4] += 1.5
    x[y == 1, :, 4:] += 1.5
    return x, y.astype(np.int64)


@pytest.fixture(scope="module")
def toy():
    return left_right(40, 0) + left_right(200, 1)


# ------------------------------------------------------------------------------------ networks
@pytest.mark.parametrize("name", RECIPES)
@pytest.mark.parametrize("in_shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_network_output_shape(name, in_shape):
    net = make_network(name, in_shape, 7)
    assert net(torch.zeros(2, *in_shape)).shape == (2, 7)


def test_make_network_rejects_bad_requests():
    with pytest.raises(ValueError, match="unknown network"):
        make_network("vgg", (1, 8, 8), 2)
    with pytest.raises(ValueError, match="at least 8×8"):
        make_network("convnet", (1, 4, 4), 2)


def test_seeded_network_is_reproducible_and_leaves_global_rng():
    state = torch.get_rng_state()
    a, b, c = (seeded_network("convnet", (1, 8, 8), 2, s) for s in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), state)
    for (_, pa), (_, pb), (_, pc) in zip(a.state_dict().items(), b.state_dict().items(),
                                         c.state_dict().items()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a[0].weight, c[0].weight)


# ------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("name", ["mlp", "convnet"])
def test_separable_problem_is_learned(toy, name):
    xt, yt, xs, ys = toy
    assert train_and_test(name, xt, yt, None, xs, ys, recipe=FAST) > 0.9


def test_resnet18_trains_with_a_trailing_single_image_batch(toy):
    xt, yt, xs, ys = toy
    acc = train_and_test("resnet18", xt[:5], yt[:5], None, xs, ys, recipe={"epochs": 2, "batch_size": 4})
    assert 0.0 <= acc <= 1.0


def test_same_seed_is_deterministic(toy):
    xt, yt, xs, ys = toy
    runs = []
    for seed in (3, 3, 4):
        events: list[TransferProgress] = []
        acc = train_and_test("convnet", xt, yt, None, xs, ys, seed=seed, recipe={"epochs": 2, "batch_size": 8},
                             progress=events.append)
        runs.append((acc, events[0].train_loss))
    assert runs[0] == runs[1]
    assert runs[0][1] != runs[2][1]


def test_batches_cover_once_and_never_hold_a_single_sample():
    g = torch.Generator().manual_seed(0)
    for n, size in [(9, 4), (10, 4), (1, 4), (5, 256)]:
        chunks = _batches(n, size, g)
        assert sorted(torch.cat(chunks).tolist()) == list(range(n))
        assert n == 1 or min(len(c) for c in chunks) >= 2


def test_augment_is_a_crop_of_the_padded_image_or_its_mirror():
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    out = _augment(x, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        crops = [p[:, r:r + 5, c:c + 6] for p in (padded[i], padded[i].flip(-1))
                 for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], crop) for crop in crops)


def test_recipe_resolution():
    assert resolve_recipe("convnet", channels=3)["augment"] is True
    assert resolve_recipe("convnet", channels=1)["augment"] is False
    assert resolve_recipe("mlp", {"epochs": 5}, channels=1, label_loss="mse")["epochs"] == 5
    with pytest.raises(ValueError, match="unknown recipe key"):
        resolve_recipe("mlp", {"epoch": 5}, channels=1)


# --------------------------------------------------------------------------------------- labels
def test_label_rule():
    y = np.array([0, 1, 2, 1])
    one_hot = np.eye(3, dtype=np.float32)[y]
    assert label_loss_for(None, y) == "hard-ce"
    assert label_loss_for(one_hot, y) == "hard-ce"
    assert label_loss_for(2 * one_hot - 1, y) == "hard-ce"
    assert label_loss_for(0.8 * one_hot + 0.2 / 3, y) == "soft-ce"
    assert label_loss_for(1.3 * one_hot - 0.1, y) == "mse"


@pytest.mark.parametrize("scale, shift, expected", [(0.8, 0.1, "soft-ce"), (1.5, -0.3, "mse")])
def test_learned_targets_train(toy, scale, shift, expected):
    xt, yt, xs, ys = toy
    targets = (scale * np.eye(2)[yt] + shift).astype(np.float32)
    events = list(run_transfer(xt, yt, targets, xs, ys, networks=("mlp",), seeds=1, epochs=10))
    summary = events[-1]
    assert summary.recipe["label_loss"] == expected
    assert summary.mean > 0.9
    with pytest.raises(ValueError, match="needs targets"):
        train_and_test("mlp", xt, yt, None, xs, ys, recipe={"label_loss": expected})


# -------------------------------------------------------------------------------- event stream
def test_evaluate_transfer_event_stream(toy):
    xt, yt, xs, ys = toy
    events = list(run_transfer(xt, yt, None, xs, ys, networks=("mlp", "convnet"), seeds=3, epochs=2))
    per_network = [TransferProgress, TransferProgress, TransferScore] * 3 + [TransferSummary]
    assert [type(e) for e in events] == per_network * 2
    for name, block in (("mlp", events[:10]), ("convnet", events[10:])):
        scores = [e for e in block if isinstance(e, TransferScore)]
        summary = block[-1]
        assert isinstance(summary, TransferSummary) and summary.network == name
        assert [s.seed for s in scores] == [0, 1, 2]
        accs = np.array([s.test_accuracy for s in scores])
        assert summary.accuracies == accs.tolist()
        assert summary.mean == pytest.approx(accs.mean())
        assert summary.std == pytest.approx(accs.std())
        assert summary.recipe["epochs"] == 2
        assert summary.to_dict()["network"] == name
        assert [e.epoch for e in block if isinstance(e, TransferProgress)] == [1, 2] * 3


def test_cancel_raises_and_stop_keeps_finished_seeds(toy):
    xt, yt, xs, ys = toy
    control = RunControl()
    run = run_transfer(xt, yt, None, xs, ys, networks=("mlp",), seeds=3, epochs=3, control=control)
    assert isinstance(next(run), TransferProgress)
    control.cancel()
    with pytest.raises(Cancelled):
        next(run)

    control = RunControl()
    events = []
    for event in run_transfer(xt, yt, None, xs, ys, networks=("mlp", "convnet"), seeds=3, epochs=2,
                                   control=control):
        events.append(event)
        control.stop()
    assert isinstance(events[-1], TransferSummary) and events[-1].network == "mlp"
    assert len(events[-1].accuracies) == 1


# ----------------------------------------------------------------------------------- baselines
def test_random_subset_is_balanced_and_seeded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    x = np.arange(60, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1), np.float32)
    xs, ys = random_subset(x, y, 4, seed=1)
    assert xs.shape == (12, 2, 2, 1) and xs.dtype == np.float32
    assert np.bincount(ys).tolist() == [4, 4, 4]
    picked = xs[:, 0, 0, 0].astype(int)
    assert len(set(picked)) == 12 and (y[picked] == ys).all()
    assert np.array_equal(random_subset(x, y, 4, seed=1)[0], xs)
    assert not np.array_equal(random_subset(x, y, 4, seed=2)[0], xs)
    with pytest.raises(ValueError, match="fewer than ipc"):
        random_subset(x, y, 100, seed=0)


def test_kmeans_centres_per_class():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    x = rng.normal(size=(60, 3, 3, 1)).astype(np.float32) + y[:, None, None, None]
    centres, labels = kmeans_centres(x, y, 2, seed=0)
    assert centres.shape == (6, 3, 3, 1) and centres.dtype == np.float32
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    single, _ = kmeans_centres(x, y, 1, seed=0)              # one cluster = the class mean
    means = np.stack([x[y == c].mean(axis=0) for c in range(3)])
    np.testing.assert_allclose(single, means, atol=1e-5)


# ------------------------------------------------------------------------------------ real data
def test_convnet_on_ten_mnist_images_per_class(datasets_dir):
    train, test = np.load(datasets_dir / "mnist-train.npz"), np.load(datasets_dir / "mnist-test.npz")
    x = train["x"].astype(np.float32)[..., None] / 255.0
    mean, std = x.mean(), x.std()
    xs, ys = random_subset((x - mean) / std, train["y"], 10, seed=0)
    x_test = (test["x"][:1000].astype(np.float32)[..., None] / 255.0 - mean) / std
    acc = train_and_test("convnet", xs, ys, None, x_test, test["y"][:1000], recipe={"epochs": 10, "batch_size": 10})
    assert acc > 0.4


def test_evaluate_export_merges_networks_into_the_manifest(tmp_path):
    """Evaluating one network, then another, keeps both entries, each with what it was measured on."""
    from engine.config import DistillConfig
    from engine.distill import run
    from engine.transfer import transfer_exported
    from engine.events import Done
    from engine.export import export_distilled, load_distilled

    done = [e for e in run(DistillConfig(steps=2, eval_every=0, snapshot_every=0)) if isinstance(e, Done)][-1]
    out = tmp_path / "set"
    export_distilled(done.result, out)
    for network in ("mlp", "convnet"):
        events = list(transfer_exported(str(out), "sample", networks=(network,), seeds=1, epochs=1, device="cpu"))
        assert isinstance(events[-1], TransferSummary)
    transfer = load_distilled(out).manifest["transfer"]
    assert sorted(transfer) == ["convnet", "mlp"]
    for entry in transfer.values():
        assert entry["data"] == "sample" and entry["device"] == "cpu" and entry["n_test"] > 0
        assert 0.0 <= entry["mean"] <= 1.0 and len(entry["accuracies"]) == 1
    # a dataset of other images (12 × 12 RGB against the sample's 8 × 8 gray) is refused by name, with the fix
    rng = np.random.default_rng(0)
    other = tmp_path / "other.npz"
    np.savez(other, x=rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8), y=np.arange(40) % 10,
             classes=np.array([str(c) for c in range(10)]))
    with pytest.raises(DatasetError, match=r"other.npz: test images are \(12, 12, 3\) \(H, W, channels\), the "
                                           r"distilled ones \(8, 8, 1\) — use the dataset it was distilled from"):
        list(transfer_exported(str(out), str(other), networks=("mlp",), seeds=1, epochs=1, device="cpu"))
