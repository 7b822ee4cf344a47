"""Transfer (dgkip-math.md §7): train finite networks from scratch on a distilled set and
report their accuracy on the real test set, over several seeds (mean ± std).

Inputs are float32 images ``(N, H, W, C)`` in the *preprocessed* space the kernel saw; the caller
applies the same preprocessing (standardisation or ZCA) to the test set before passing it in.

Recipes (:data:`RECIPES`; one recipe for every network, as DC/DSA/MTT evaluate across architectures
with the ``evaluate_synset`` settings of the DC/DSA code):

| key | value | meaning |
|---|---|---|
| ``epochs`` | 300 | passes over the training set (DC/DSA; MTT uses 1000); :data:`QUICK_EPOCHS` for CPU runs |
| ``batch_size`` | 256 | mini-batch size (the whole set when smaller); a trailing batch of 1 joins the previous one |
| ``optimizer`` | ``"sgd"`` | SGD with momentum (``"adam"`` accepted as an override) |
| ``lr`` | 0.01 | initial learning rate |
| ``momentum`` | 0.9 | SGD momentum |
| ``weight_decay`` | 5e-4 | L2 penalty (coupled, as in ``torch.optim.SGD``) |
| ``lr_decay`` / ``lr_decay_at`` | 0.1 / 0.5 | multiply the rate by 0.1 once, after half the epochs |
| ``augment`` | ``"auto"`` | random crop (zero padding ``crop_padding`` = 4 px, i.e. the mean pixel for standardised data) + horizontal flip; ``"auto"`` = on for 3-channel images, off otherwise (digits must not be flipped) |
| ``label_loss`` | ``"auto"`` | ``"hard-ce"``, ``"soft-ce"`` or ``"mse"``; the rule below |

Label rule (``"auto"``): ``targets`` that carry nothing beyond the class index (absent, one-hot, or
±1 one-vs-rest codes of ``y``) → cross-entropy on the class index; rows that are probability vectors
(non-negative, summing to 1: learned labels of a cross-entropy set) → soft cross-entropy
``−Σ_c t_c log softmax(f)_c``; any other real vectors (learned labels of a squared-loss set) → squared
loss ``½ Σ_c (t_c − f_c)²``, averaged over the batch. Predictions are ``argmax_c f_c`` in every case.

ResNet-18 keeps torchvision's BatchNorm. With IPC 1 a batch holds one image per class, so the batch
statistics are those of the whole (tiny) set; batches of a single image are never formed, and after
training the running statistics are recomputed exactly on the training set (one pass in train mode
without gradients) instead of relying on the momentum average, which short runs leave unconverged.

Determinism: for a given seed, weights are initialised from ``torch.manual_seed(seed)`` inside
``torch.random.fork_rng`` (the caller's global generator is left untouched) and shuffling and
augmentation draw from a CPU ``torch.Generator`` seeded with ``seed``; results are bitwise
reproducible on CPU (on CUDA up to cuDNN's own non-determinism). Seeds of :func:`run_transfer`
are ``0 .. seeds − 1``; ``std`` is the population standard deviation (``np.std``, as DC reports it).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.control import RunControl
from engine.generators import drain
from engine.tensors import to_nchw
from engine.transfer.networks import NETWORKS, make_network

_RECIPE = {
    "epochs": 300,
    "batch_size": 256,
    "optimizer": "sgd",
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "lr_decay": 0.1,
    "lr_decay_at": 0.5,
    "augment": "auto",
    "crop_padding": 4,
    "label_loss": "auto",
}
RECIPES: dict[str, dict[str, Any]] = {name: dict(_RECIPE) for name in NETWORKS}
QUICK_EPOCHS = 100
"""Documented CPU budget (pass as ``epochs=``). ConvNet on random real MNIST, standardised, 3 seeds:
IPC 1 52.0 % (300 epochs: 52.3 %), IPC 10 91.4 % (300 epochs: 92.2 %)."""
LABEL_LOSSES = ("hard-ce", "soft-ce", "mse")


# ---------------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class TransferProgress:
    """One training epoch finished; ``train_loss`` is the epoch's mean loss per sample."""
    network: str
    seed: int
    epoch: int          # 1-based
    epochs: int
    train_loss: float


@dataclass(frozen=True)
class TransferScore:
    """One network trained with one seed; ``test_accuracy`` in [0, 1], ``seconds`` = wall-clock time
    of training and testing (including any pause)."""
    network: str
    seed: int
    test_accuracy: float
    seconds: float


@dataclass
class TransferSummary:
    """All seeds of one network: accuracies in [0, 1], ``std`` with ddof = 0, the resolved recipe,
    total seconds."""
    network: str
    accuracies: list[float]
    mean: float
    std: float
    recipe: dict
    seconds: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------ data
@dataclass(frozen=True)
class _Data:
    x_train: torch.Tensor        # (n, C, H, W) float32
    t_train: torch.Tensor        # (n,) int64 class indices, or (n, classes) float32 targets
    x_test: torch.Tensor         # (n_test, C, H, W) float32
    y_test: torch.Tensor         # (n_test,) int64
    num_classes: int
    label_loss: str

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


def _nchw(x: np.ndarray, what: str) -> torch.Tensor:
    """(N, H, W, C) images → float32 (N, C, H, W) tensor; another shape is a ValueError naming ``what``."""
    if x.ndim != 4:
        raise ValueError(f"{what} must be images shaped (N, H, W, C); got shape {x.shape}")
    return to_nchw(x)


def label_loss_for(targets: np.ndarray | None, y: np.ndarray) -> str:
    """The ``"auto"`` label rule (module docstring): ``"hard-ce"``, ``"soft-ce"`` or ``"mse"``.
    ``targets`` float (n, classes) or None, ``y`` int (n,)."""
    if targets is None:
        return "hard-ce"
    one_hot = np.eye(targets.shape[1], dtype=np.float64)[y]
    if np.allclose(targets, one_hot) or np.allclose(targets, 2.0 * one_hot - 1.0):
        return "hard-ce"
    if (targets >= 0).all() and np.allclose(targets.sum(axis=1), 1.0, atol=1e-4):
        return "soft-ce"
    return "mse"


def _prepare(x_train: np.ndarray, y_train: np.ndarray, targets: np.ndarray | None,
             x_test: np.ndarray, y_test: np.ndarray, label_loss: str) -> _Data:
    x_train, x_test = np.asarray(x_train), np.asarray(x_test)
    y_train, y_test = np.asarray(y_train, dtype=np.int64), np.asarray(y_test, dtype=np.int64)
    if len(x_train) == 0 or len(x_test) == 0:
        raise ValueError("the training and test sets must both hold at least one image")
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"images and labels differ in length: train {len(x_train)} vs {len(y_train)}, "
                         f"test {len(x_test)} vs {len(y_test)}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"train images {x_train.shape[1:]} and test images {x_test.shape[1:]} differ in shape")
    if targets is not None:
        targets = np.asarray(targets, dtype=np.float32)
        if targets.ndim != 2 or len(targets) != len(y_train):
            raise ValueError(f"targets must be (N, classes) with N = {len(y_train)}; got {targets.shape}")
        num_classes = targets.shape[1]
    else:
        num_classes = int(max(y_train.max(), y_test.max())) + 1
    if max(y_train.max(), y_test.max()) >= num_classes or min(y_train.min(), y_test.min()) < 0:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    if label_loss == "auto":
        label_loss = label_loss_for(targets, y_train)
    elif label_loss not in LABEL_LOSSES:
        raise ValueError(f"label_loss {label_loss!r} is not one of auto, {', '.join(LABEL_LOSSES)}")
    elif label_loss != "hard-ce" and targets is None:
        raise ValueError(f"label_loss {label_loss!r} needs targets")
    t_train = torch.from_numpy(y_train) if label_loss == "hard-ce" else torch.from_numpy(targets)
    return _Data(_nchw(x_train, "x_train"), t_train, _nchw(x_test, "x_test"), torch.from_numpy(y_test),
                 num_classes, label_loss)


def resolve_recipe(name: str, recipe: Mapping[str, Any] | None = None, *, channels: int,
                   label_loss: str = "auto") -> dict[str, Any]:
    """``RECIPES[name]`` updated with ``recipe`` (any subset of its keys), with ``"auto"`` values made
    concrete: ``augment`` from the number of ``channels``, ``label_loss`` from the given (resolved) rule."""
    if name not in RECIPES:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(RECIPES)}")
    unknown = sorted(set(recipe or {}) - set(RECIPES[name]))
    if unknown:
        raise ValueError(f"unknown recipe key {unknown[0]!r} (known: {', '.join(RECIPES[name])})")
    out = {**RECIPES[name], **(recipe or {})}
    if out["augment"] == "auto":
        out["augment"] = channels == 3
    if out["label_loss"] == "auto":
        out["label_loss"] = label_loss
    if not (isinstance(out["epochs"], int) and out["epochs"] >= 1 and out["batch_size"] >= 1):
        raise ValueError(f"epochs and batch_size must be whole numbers ≥ 1 (got {out['epochs']!r}, "
                         f"{out['batch_size']!r})")
    if out["optimizer"] not in ("sgd", "adam"):
        raise ValueError(f"optimizer {out['optimizer']!r} is not one of sgd, adam")
    return out


# -------------------------------------------------------------------------------------- training
def _batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Index batches over ``n`` samples (shuffled when ``generator`` is given); a trailing batch of a
    single sample is merged into the previous one (BatchNorm needs ≥ 2)."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def _augment(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop after zero padding by ``padding`` px, and horizontal flip with
    probability ½. ``x`` (B, C, H, W) → same shape."""
    b, c, h, w = x.shape
    shift = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = shift[0, :, None] + torch.arange(h, device=x.device)             # (B, H)
    cols = shift[1, :, None] + torch.arange(w, device=x.device)             # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    padded = F.pad(x, (padding,) * 4)
    return padded[torch.arange(b, device=x.device)[:, None, None, None],
                  torch.arange(c, device=x.device)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def _loss(label_loss: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the per-sample loss (module docstring)."""
    if label_loss == "mse":
        return 0.5 * (out - target).square().sum(dim=1).mean()
    return F.cross_entropy(out, target)    # class indices (hard) or probability rows (soft)


def _recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Set BatchNorm running statistics to the exact averages over ``x`` under the final weights."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None              # cumulative average over the pass
    model.train()
    with torch.no_grad():
        for idx in _batches(len(x), batch_size, None):
            model(x[idx])


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
              device: torch.device) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            out = model(x[start:start + batch_size].to(device))
            correct += int((out.argmax(dim=1).cpu() == y[start:start + batch_size]).sum())
    return correct / len(x)


def seeded_network(name: str, in_shape: tuple[int, int, int], num_classes: int, seed: int) -> nn.Module:
    """:func:`make_network` with weights drawn after ``torch.manual_seed(seed)``, leaving the global
    generator as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make_network(name, in_shape, num_classes)


def _fit(name: str, data: _Data, recipe: Mapping[str, Any], seed: int, device: torch.device,
         control: RunControl | None) -> Generator[TransferProgress, None, float]:
    """Train network ``name`` with ``recipe`` (resolved) and ``seed``; yield one event per epoch and
    return the test accuracy in [0, 1]."""
    model = seeded_network(name, data.in_shape, data.num_classes, seed).to(device)
    generator = torch.Generator().manual_seed(seed)
    x, t = data.x_train.to(device), data.t_train.to(device)
    if recipe["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=recipe["momentum"],
                              weight_decay=recipe["weight_decay"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    epochs = recipe["epochs"]
    schedule = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=[int(epochs * recipe["lr_decay_at"])], gamma=recipe["lr_decay"])
    for epoch in range(epochs):
        if control is not None:
            control.checkpoint()
        model.train()
        total = 0.0
        for idx in _batches(len(x), recipe["batch_size"], generator):
            idx = idx.to(device)
            xb = _augment(x[idx], recipe["crop_padding"], generator) if recipe["augment"] else x[idx]
            loss = _loss(data.label_loss, model(xb), t[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        schedule.step()
        yield TransferProgress(name, seed, epoch + 1, epochs, total / len(x))
    _recalibrate_batchnorm(model, x, recipe["batch_size"])
    return _accuracy(model, data.x_test, data.y_test, recipe["batch_size"], device)


# ------------------------------------------------------------------------------------ public API
def train_and_test(name: str, x_train: np.ndarray, y_train: np.ndarray, targets: np.ndarray | None,
                   x_test: np.ndarray, y_test: np.ndarray, *, seed: int = 0,
                   recipe: Mapping[str, Any] | None = None, device: str | torch.device = "cpu",
                   control: RunControl | None = None,
                   progress: Callable[[TransferProgress], None] | None = None) -> float:
    """Train network ``name`` from scratch on ``x_train`` and return its accuracy on ``x_test``.

    ``x_*`` float32 (N, H, W, C) preprocessed images, ``y_*`` int64 (N,), ``targets`` float32
    (N, classes) label vectors or None; ``recipe`` overrides any keys of ``RECIPES[name]``;
    ``progress`` is called once per epoch. Raises :class:`engine.control.Cancelled` when
    ``control`` is cancelled (checked before every epoch; pausing blocks there)."""
    data = _prepare(x_train, y_train, targets, x_test, y_test, (recipe or {}).get("label_loss", "auto"))
    resolved = resolve_recipe(name, recipe, channels=data.in_shape[0], label_loss=data.label_loss)
    return drain(_fit(name, data, resolved, seed, torch.device(device), control), progress)


def run_transfer(x_train: np.ndarray, y_train: np.ndarray, targets: np.ndarray | None,
                      x_test: np.ndarray, y_test: np.ndarray, *, networks: Sequence[str] = NETWORKS,
                      seeds: int = 3, device: str | torch.device = "cpu", epochs: int | None = None,
                      control: RunControl | None = None
                      ) -> Iterator[TransferProgress | TransferScore | TransferSummary]:
    """Train every network in ``networks`` with seeds ``0 .. seeds − 1`` (arrays as in
    :func:`train_and_test`). Per network, yields a :class:`TransferProgress` per epoch and a
    :class:`TransferScore` per seed, then its :class:`TransferSummary`. ``epochs`` overrides every
    recipe's epochs. ``control``: pause/cancel are honoured before every epoch (cancel raises
    :class:`engine.control.Cancelled`); stop ends the run after the current seed, with a summary of
    the seeds finished so far (every reported accuracy is a fully trained network)."""
    if seeds < 1:
        raise ValueError(f"seeds must be ≥ 1 (got {seeds})")
    data = _prepare(x_train, y_train, targets, x_test, y_test, "auto")
    override = {} if epochs is None else {"epochs": epochs}
    recipes = {name: resolve_recipe(name, override, channels=data.in_shape[0], label_loss=data.label_loss)
               for name in networks}
    for name, recipe in recipes.items():
        accuracies: list[float] = []
        total = 0.0
        for seed in range(seeds):
            start = time.perf_counter()
            accuracy = yield from _fit(name, data, recipe, seed, torch.device(device), control)
            seconds = time.perf_counter() - start
            accuracies.append(accuracy)
            total += seconds
            yield TransferScore(name, seed, accuracy, seconds)
            if control is not None and control.stop_requested:
                break
        yield TransferSummary(name, accuracies, float(np.mean(accuracies)), float(np.std(accuracies)),
                              recipe, total)
        if control is not None and control.stop_requested:
            return
