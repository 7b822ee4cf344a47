"""The reference KIP step, as Google published it, for ``bench --suite speed`` (never imported by the app).

Run by a *separate* Python that has ``neural-tangents`` and ``jax`` (they are not project dependencies):

    PEER/bin/python engine/peer_kip.py DATA.npz STEPS

``DATA.npz`` holds the real pool ``xb`` (b, d) float32, its targets ``yb`` (b, C), the initial support
images ``xs`` (m, d), their labels ``ys`` (m, C), ``lam`` (mean-form λ; the ridge is λ·m·I, the
engine's fixed convention) and ``lr``. The step is KIP's: neural-tangents' ``stax`` kernel of
``serial(Dense(W_std=√2, b_std=0.1), Relu, Dense(W_std=√2, b_std=0.1))`` (ntk), the kernel-ridge loss on the whole pool, its
gradient in the support images by ``jax.value_and_grad``, one Adam update, all under one ``jax.jit``.
Prints one JSON line: the loss at the initial images and the seconds of each of ``STEPS`` steps after
a compiling warm-up step.
"""
import json
import sys
import time

import numpy as np


def main(path: str, steps: int) -> None:
    import jax
    import jax.numpy as jnp
    from jax.example_libraries import optimizers
    from neural_tangents import stax

    data = np.load(path)
    xb, yb, xs, ys = (jnp.asarray(data[k]) for k in ("xb", "yb", "xs", "ys"))
    lam, lr = float(data["lam"]), float(data["lr"])
    dense = dict(out_dim=1, W_std=2 ** 0.5, b_std=0.1)            # the kernel does not depend on out_dim
    _, _, kernel_fn = stax.serial(stax.Dense(**dense), stax.Relu(), stax.Dense(**dense))
    m = xs.shape[0]

    def loss(x_support):
        k_ss = kernel_fn(x_support, x_support, "ntk")
        k_bs = kernel_fn(xb, x_support, "ntk")
        coef = jnp.linalg.solve(k_ss + lam * m * jnp.eye(m), ys)
        return 0.5 * jnp.mean(jnp.sum((yb - k_bs @ coef) ** 2, axis=1))

    opt_init, opt_update, get_params = optimizers.adam(lr)

    @jax.jit
    def step(i, state):
        value, grad = jax.value_and_grad(loss)(get_params(state))
        return value, opt_update(i, grad, state)

    state = opt_init(xs)
    first, state = step(0, state)                  # compiles
    first.block_until_ready()
    seconds = []
    for i in range(1, steps + 1):
        t0 = time.perf_counter()
        value, state = step(i, state)
        value.block_until_ready()
        seconds.append(time.perf_counter() - t0)
    print(json.dumps({"loss0": float(first), "seconds": seconds, "jax": jax.__version__}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
