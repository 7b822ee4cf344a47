"""KIP *training* as Google published it, for the ridge comparison of issue 17 (never imported by the app).

Run by a *separate* Python that has ``neural-tangents`` and ``jax`` (they are not project dependencies),
driven by :mod:`engine.bench.kip_peer`:

    PEER/bin/python engine/bench/peer/kip_train.py kernel IN.npz OUT.npz    stax kernel values, float64
    PEER/bin/python engine/bench/peer/kip_train.py train  IN.npz OUT.npz    KIP steps from the given images

``IN.npz`` (``kernel``): ``a`` (n, d), ``b`` (k, d), ``depth``; writes ``ntk`` (n, k) and ``nngp``.

``IN.npz`` (``train``): the real pool ``xb`` (b, d) float32, its targets ``yb`` (b, C), the initial
support images ``xs`` (m, d) and their targets ``ys`` (m, C), ``lam``, ``lr``, ``steps``, ``depth`` and
``ridge`` ("trace" or "fixed"). The objective is KIP's (Nguyen et al. 2021, the KIP notebooks and
neural-tangents' examples): neural-tangents' ``stax`` NTK of ``serial(*[Dense(W_std=√2, b_std=0.1), Relu]
* depth, Dense(W_std=√2, b_std=0.1))``, the kernel-ridge loss ½·mean_b ‖y_b − K_bS (K_SS + ρ I)⁻¹ y_S‖²
on the whole pool every step, with the published ridge ρ = reg · tr(K_SS) / m (``ridge = "trace"``, λ
is the published ``reg``) or the engine's fixed ρ = λ·m; the gradient in the support images by
``jax.value_and_grad`` (through the trace, as published), ``jax.example_libraries.optimizers.adam``,
all under one ``jax.jit``, float32 (JAX's default). Writes the final images ``xs``, the loss before
each step ``losses`` and each step's ``seconds`` (after a compiling first step, which is not timed).
"""
import sys
import time

import numpy as np


def _kernel_fn(depth: int):
    from neural_tangents import stax

    dense = dict(out_dim=1, W_std=2 ** 0.5, b_std=0.1)            # the kernel does not depend on out_dim
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(**dense), stax.Relu()]
    _, _, kernel_fn = stax.serial(*layers, stax.Dense(**dense))
    return kernel_fn


def kernel(inp: str, out: str) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    data = np.load(inp)
    fn = _kernel_fn(int(data["depth"]))
    a, b = jnp.asarray(data["a"], jnp.float64), jnp.asarray(data["b"], jnp.float64)
    k = fn(a, b, ("ntk", "nngp"))
    np.savez(out, ntk=np.asarray(k.ntk), nngp=np.asarray(k.nngp), jax=jax.__version__)


def kip_update(xb, yb, lam: float, lr: float, m: int, depth: int, ridge: str):
    """KIP's jit-compiled step on the pool (xb, yb) for m support images: (opt_init, update, get_params)
    with ``update(i, state) -> (loss before the step, new state)`` (also timed by engine/bench/peer/kip_step.py)."""
    import jax
    import jax.numpy as jnp
    from jax.example_libraries import optimizers

    kernel_fn = _kernel_fn(depth)

    def loss(x_support, ys):
        k_ss = kernel_fn(x_support, x_support, "ntk")
        k_bs = kernel_fn(xb, x_support, "ntk")
        if ridge == "trace":                          # the published KIP: reg · tr(K_SS) / m
            rho = lam * jnp.trace(k_ss) / m
        elif ridge == "fixed":
            rho = lam * m
        else:
            raise ValueError(ridge)
        coef = jnp.linalg.solve(k_ss + rho * jnp.eye(m), ys)
        return 0.5 * jnp.mean(jnp.sum((yb - k_bs @ coef) ** 2, axis=1))

    opt_init, opt_update, get_params = optimizers.adam(lr)

    @jax.jit
    def update(i, state, ys):
        value, grad = jax.value_and_grad(loss)(get_params(state), ys)
        return value, opt_update(i, grad, state)

    return opt_init, update, get_params


def train(inp: str, out: str) -> None:
    import jax
    import jax.numpy as jnp

    data = np.load(inp)
    xb, yb, xs, ys = (jnp.asarray(data[k], jnp.float32) for k in ("xb", "yb", "xs", "ys"))
    lam, lr, steps = float(data["lam"]), float(data["lr"]), int(data["steps"])
    opt_init, step, get_params = kip_update(xb, yb, lam, lr, xs.shape[0], int(data["depth"]), str(data["ridge"]))
    state = opt_init(xs)
    losses, seconds = [], []
    value, state = step(0, state, ys)              # compiles (not timed)
    losses.append(float(value))
    for i in range(1, steps):
        t0 = time.perf_counter()
        value, state = step(i, state, ys)
        value.block_until_ready()
        seconds.append(time.perf_counter() - t0)
        losses.append(float(value))
    np.savez(out, xs=np.asarray(get_params(state)), losses=np.asarray(losses), seconds=np.asarray(seconds),
             jax=jax.__version__)


if __name__ == "__main__":
    {"kernel": kernel, "train": train}[sys.argv[1]](sys.argv[2], sys.argv[3])
