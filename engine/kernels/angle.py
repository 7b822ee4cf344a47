"""The ReLU arc-cosine map's angle term, φ = π − θ with θ = atan2(s, q), written into a buffer.

Two formulas give φ, equal up to rounding (float32: within 4e-7 of a float64 reference):

- ``"atan2"``: π − atan2(s, q), two elementwise passes;
- ``"atan"``: π/2 + atan(q/s), three passes (q/s is +∞ where s = 0 and q > 0: θ = 0 exactly there).

Which is faster depends on the processor, and by a factor of two either way: torch dispatches
``atan2`` on the CPU's instruction set (SLEEF) but not ``atan``. Measured in ns an entry, float32,
2 threads, torch 2.14.1: AMD EPYC with AVX-512, atan2 0.74 and atan 1.25–1.38; the same machine
forced to AVX2 (``ATEN_CPU_CAPABILITY=avx2``), 1.21 against 1.25; without SIMD (``default``), 9.9
against 1.23; an earlier AMD EPYC (AVX2), one thread, 2.6 against 1.5. So on the CPU the choice is
measured once per dtype and thread count on the machine that runs (:func:`method`; 2–8 ms on the AMD
EPYC, one or two threads, both dtypes); CUDA takes ``atan2``.

Shapes: ``s`` and ``q`` are equal-shaped tensors, s ≥ 0 (√(P − q²) of the map, in q's units);
``out`` has their shape. Where s = q = 0 (the diagonal of k(x, x) for a zero input without bias)
``"atan"`` gives NaN: the kernels write θ = 0 on their diagonal themselves.
"""
from __future__ import annotations

import functools
import math

import torch

from engine.timing import fastest_of

METHODS = ("atan2", "atan")

# the "atan" formula must beat atan2 by this factor to be taken: near a tie atan2 (fewer passes) stays,
# so that runs on one machine do not flip between formulas on timing noise
MARGIN = 0.8

_chosen: dict[tuple[str, torch.dtype, int], str] = {}


def complement_into(s: torch.Tensor, q: torch.Tensor, out: torch.Tensor, *, negate: bool = False,
                    how: str | None = None) -> torch.Tensor:
    """Write φ = π − atan2(s, q) into ``out`` (θ − π = −φ with ``negate``) and return it. ``out`` must
    not alias ``s`` or ``q``. ``how``: one of :data:`METHODS`, else :func:`method`'s choice."""
    how = how or method(q.dtype, q.device)
    if how == "atan2":
        torch.atan2(s, q, out=out)
        return out.sub_(math.pi) if negate else torch.add(_const(math.pi, q), out, alpha=-1.0, out=out)
    torch.div(q, s, out=out).atan_()
    if negate:                                    # −π/2 − atan(q/s) in one pass
        return torch.add(_const(-math.pi / 2, q), out, alpha=-1.0, out=out)
    return out.add_(math.pi / 2)


def method(dtype: torch.dtype, device: torch.device | str = "cpu") -> str:
    """The faster formula on this machine for ``dtype``: timed once per dtype and thread count on the
    CPU (the minimum of 5 interleaved rounds on one sub-tile of the in-place kernel), ``"atan2"``
    elsewhere."""
    if torch.device(device).type != "cpu":
        return "atan2"
    key = ("cpu", dtype, torch.get_num_threads())
    if key not in _chosen:
        _chosen[key] = _measure(dtype)
    return _chosen[key]


def _measure(dtype: torch.dtype, entries: int | None = None, rounds: int = 5) -> str:
    """Time both formulas on ``entries`` values (default: the in-place kernel's sub-tile, 2^17 float32
    or 2^16 float64 entries; at torch's grain of 2^15 one formula ran on one thread, the other on
    more)."""
    if entries is None:
        from engine.kernels.fc import CACHE_BYTES            # (fc imports this module)
        entries = CACHE_BYTES // torch.tensor([], dtype=dtype).element_size()
    gen = torch.Generator().manual_seed(0)
    theta = torch.rand(entries, generator=gen, dtype=torch.float64) * math.pi
    s, q = theta.sin().to(dtype), theta.cos().to(dtype)
    out = torch.empty_like(q)
    with torch.no_grad():
        best = fastest_of({how: functools.partial(complement_into, s, q, out, how=how) for how in METHODS},
                          rounds)
    return "atan" if best["atan"] < MARGIN * best["atan2"] else "atan2"


def _const(value: float, like: torch.Tensor) -> torch.Tensor:
    """A 0-d tensor of ``value`` in ``like``'s dtype and device (torch.add(c, x, alpha=-1) is c − x
    in one pass), made once: on a GPU each new one would be a host-to-device copy."""
    return _cached_const(value, like.dtype, like.device)


@functools.lru_cache(maxsize=64)
def _cached_const(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(value, dtype=dtype, device=device)
