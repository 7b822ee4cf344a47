"""Kernel registry: ``make_kernel(name, **params)`` → :class:`~engine.kernels.base.Kernel`.

Every kernel is a callable ``k(a, b) -> Tensor[n_a, n_b]`` with ``k.diag(a) -> Tensor[n_a]``,
differentiable in its inputs and evaluated in row tiles bounded by ``tile_bytes``.
"""
from __future__ import annotations

from typing import Any, Callable

from engine.kernels.base import Kernel, median_distance
from engine.kernels.conv import ConvNetworkKernel
from engine.kernels.fc import FCNetworkKernel, LinearKernel, RBFKernel
from engine.kernels.random_features import RandomConvKernel, RandomFCKernel

_REGISTRY: dict[str, Callable[..., Kernel]] = {
    "linear": LinearKernel,
    "rbf": RBFKernel,
    "nngp-fc": lambda **p: FCNetworkKernel(ntk=False, **p),
    "ntk-fc": lambda **p: FCNetworkKernel(ntk=True, **p),
    "nngp-conv": lambda **p: ConvNetworkKernel(ntk=False, **p),
    "ntk-conv": lambda **p: ConvNetworkKernel(ntk=True, **p),
    "rf-fc": RandomFCKernel,
    "rf-conv": RandomConvKernel,
}


def register(name: str, factory: Callable[..., Kernel]) -> None:
    """Make ``make_kernel(name, **params)`` build ``factory(**params)``. The kernel needs only
    :meth:`Kernel._block` and :meth:`Kernel.diag` (and :meth:`Kernel.features` when explicit): the run
    plan asks it for its costs (engine.kernels.base), which default to generic models and, per kernel
    entry, a short timing; override them where the kernel knows better."""
    _REGISTRY[name] = factory


def kernel_names() -> list[str]:
    return list(_REGISTRY)


def make_kernel(name: str, **params: Any) -> Kernel:
    """Build a kernel by name; unknown names or parameters raise ``ValueError`` naming them."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown kernel {name!r}; choose one of {', '.join(_REGISTRY)}")
    try:
        return _REGISTRY[name](**params)
    except TypeError as exc:
        raise ValueError(f"kernel {name!r}: bad parameter ({exc})") from exc


__all__ = ["Kernel", "make_kernel", "kernel_names", "register", "median_distance"]
