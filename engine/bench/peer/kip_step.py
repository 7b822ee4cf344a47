"""The reference KIP step and kernels, as Google published them, for ``bench --suite speed`` (never
imported by the app).

Run by a *separate* Python that has ``neural-tangents`` and ``jax`` (they are not project dependencies):

    PEER/bin/python engine/bench/peer/kip_step.py step DATA.npz STEPS
    PEER/bin/python engine/bench/peer/kip_step.py kernel SHAPES.npz REPEATS

``step``: ``DATA.npz`` holds the real pool ``xb`` (b, d) float32, its targets ``yb`` (b, C), the
initial support images ``xs`` (m, d), their labels ``ys`` (m, C), ``lam`` (the published ``reg``: the
ridge is λ·tr(K_SS)/m·I, the engine's default ``kip_ridge = trace``) and ``lr``. The step is KIP's: neural-tangents' ``stax`` kernel
of ``serial(Dense(W_std=√2, b_std=0.1), Relu, Dense(W_std=√2, b_std=0.1))`` (ntk), the kernel-ridge
loss on the whole pool, its gradient in the support images by ``jax.value_and_grad``, one Adam update,
all under one ``jax.jit``. Prints one JSON line: the loss at the initial images and the seconds of
each of ``STEPS`` steps after a compiling warm-up step.

``kernel``: ``SHAPES.npz`` holds ``a`` (n_a, H, W, C) and ``b`` (n_b, H, W, C) float32 images and the
architecture ``arch`` ("fc" or "conv"), ``depth``, ``filter_size`` and ``ntk`` (0/1). Times the
jit-compiled ``kernel_fn(a, b)`` of ``serial(*[Dense | Conv(…, SAME), Relu] * depth, [Flatten],
Dense)`` (W_std √2, b_std 0.1) after a compiling call, ``REPEATS`` times; prints the seconds and the
kernel's first entries (for the agreement check).
"""
import json
import sys
import time

import numpy as np


def _kernel_fn(arch: str, depth: int, filter_size: int = 3):
    if arch == "fc":
        from kip_train import _kernel_fn as fc_kernel_fn      # beside this script, run by the same Python
        return fc_kernel_fn(depth)
    from neural_tangents import stax
    std = dict(W_std=2 ** 0.5, b_std=0.1)                     # the kernel does not depend on out_dim
    layers = ([stax.Conv(1, (filter_size, filter_size), padding="SAME", **std), stax.Relu()] * depth
              + [stax.Flatten(), stax.Dense(1, **std)])
    return stax.serial(*layers)[2]


def step(path: str, steps: int) -> None:
    import jax
    import jax.numpy as jnp
    from kip_train import kip_update                         # beside this script: KIP's step, once

    data = np.load(path)
    xb, yb, xs, ys = (jnp.asarray(data[k]) for k in ("xb", "yb", "xs", "ys"))
    opt_init, update, _ = kip_update(xb, yb, float(data["lam"]), float(data["lr"]), xs.shape[0], 1, "trace")
    state = opt_init(xs)
    first, state = update(0, state, ys)            # compiles
    first.block_until_ready()
    seconds = []
    for i in range(1, steps + 1):
        t0 = time.perf_counter()
        value, state = update(i, state, ys)
        value.block_until_ready()
        seconds.append(time.perf_counter() - t0)
    print(json.dumps({"loss0": float(first), "seconds": seconds, "jax": jax.__version__}))


def kernel(path: str, repeats: int) -> None:
    import jax
    import jax.numpy as jnp

    data = np.load(path)
    a, b = jnp.asarray(data["a"]), jnp.asarray(data["b"])
    if str(data["arch"]) == "fc":
        a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    get = "ntk" if int(data["ntk"]) else "nngp"
    fn = jax.jit(lambda u, v: _kernel_fn(str(data["arch"]), int(data["depth"]), int(data["filter_size"]))(u, v, get))
    first = fn(a, b).block_until_ready()           # compiles
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(a, b).block_until_ready()
        seconds.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": seconds, "corner": np.asarray(first)[:4, :4].tolist(), "jax": jax.__version__}))


if __name__ == "__main__":
    {"step": step, "kernel": kernel}[sys.argv[1]](sys.argv[2], int(sys.argv[3]))
