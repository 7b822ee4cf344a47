"""Finite networks for transfer evaluation: an MLP, ConvNet-3 and ResNet-18 for small images.

All take ``(n, C, H, W)`` float32 input in the preprocessed space and return ``(n, num_classes)``
logits (or regression outputs when trained with the squared loss).

| name | architecture | notes |
|---|---|---|
| ``mlp`` | flatten → Linear(C·H·W, 512) → ReLU → Linear(512, 512) → ReLU → Linear(512, classes) | two hidden layers of 512 (DC's MLP uses 128; wider is closer to the FC kernels' infinite-width regime) |
| ``convnet`` | 3 × [Conv 3×3, 128 ch, pad 1 → GroupNorm(128, 128) (instance norm, affine) → ReLU → AvgPool 2×2] → flatten → Linear | ConvNet-3 of DC/DSA/MTT; 28×28 input is used as is (28 → 14 → 7 → 3, as in their code), 32×32 → 4×4, 8×8 → 1×1; needs H, W ≥ 8 |
| ``resnet18`` | torchvision ResNet-18, stem Conv 3×3 stride 1 (no max-pool), ``in_channels`` from the data | BatchNorm as in torchvision (ResNet18BN of the literature); see :mod:`engine.transfer` for how tiny training sets are handled |

Weights use PyTorch's default initialisation, drawn from the global CPU generator (seed it with
``torch.manual_seed`` or ``torch.random.fork_rng`` for reproducible networks).
"""
from __future__ import annotations

from torch import nn
from torchvision.models import resnet18

NETWORKS = ("mlp", "convnet", "resnet18")
MLP_WIDTH = 512
CONVNET_WIDTH = 128
CONVNET_DEPTH = 3


def mlp(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Two ReLU hidden layers of :data:`MLP_WIDTH` on the flattened image."""
    d = in_shape[0] * in_shape[1] * in_shape[2]
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(d, MLP_WIDTH), nn.ReLU(),
        nn.Linear(MLP_WIDTH, MLP_WIDTH), nn.ReLU(),
        nn.Linear(MLP_WIDTH, num_classes),
    )


def convnet(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """ConvNet-3 (width 128, instance norm, ReLU, average pooling) with a linear head."""
    channels, h, w = in_shape
    if min(h, w) < 2 ** CONVNET_DEPTH:
        raise ValueError(f"convnet needs images of at least {2 ** CONVNET_DEPTH}×{2 ** CONVNET_DEPTH} "
                         f"pixels (three 2×2 poolings); got {h}×{w}")
    layers: list[nn.Module] = []
    for _ in range(CONVNET_DEPTH):
        layers += [nn.Conv2d(channels, CONVNET_WIDTH, kernel_size=3, padding=1),
                   nn.GroupNorm(CONVNET_WIDTH, CONVNET_WIDTH, affine=True),
                   nn.ReLU(),
                   nn.AvgPool2d(kernel_size=2, stride=2)]
        channels, h, w = CONVNET_WIDTH, h // 2, w // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * h * w, num_classes))


def resnet18_small(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """torchvision ResNet-18 with the CIFAR stem: Conv 3×3 stride 1, no max-pool."""
    net = resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


_FACTORIES = {"mlp": mlp, "convnet": convnet, "resnet18": resnet18_small}


def make_network(name: str, in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build network ``name`` for images ``in_shape`` = (C, H, W) and ``num_classes`` outputs."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}")
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes (got {num_classes})")
    return _FACTORIES[name](tuple(int(s) for s in in_shape), int(num_classes))
