"""A kernel registered at run time (engine.kernels.register) is distilled, estimated and exported with
no other change to the engine: the run plan asks the kernel for its costs (engine.kernels.base), the
objectives and the certificates only call it.

The config reads its kernel names from the registry (engine.config.KERNELS), so the registered name
validates with no change to the config.
"""
import math

import numpy as np
import pytest
import torch

import engine.kernels as kernels
from engine.config import DistillConfig
from engine.data import sample_dataset
from engine.distill import run
from engine.events import Done, Step
from engine.export import export_distilled, load_distilled
from engine.kernels.base import Kernel, row_sq_norms
from engine.plan import estimate_run


class PolyKernel(Kernel):
    """k(a, b) = (aᵀb / d + c)²: a kernel the engine has never seen; it reports no costs of its own."""

    name = "test-poly"

    def __init__(self, c: float = 1.0, **kw) -> None:
        super().__init__(**kw)
        self.c = float(c)

    def params(self):
        return {"c": self.c}

    def _block(self, a, b, diag_offset=None):
        return (a @ b.T / a.shape[1] + self.c) ** 2

    def diag(self, a):
        a = self.prepare(a)
        return (row_sq_norms(a) / a.shape[1] + self.c) ** 2


@pytest.fixture
def poly(monkeypatch):
    monkeypatch.delitem(kernels._REGISTRY, "test-poly", raising=False)   # removed again afterwards
    yield
    kernels._REGISTRY.pop("test-poly", None)


def test_registered_kernel_is_distilled_estimated_and_exported(poly, tmp_path):
    kernels.register("test-poly", PolyKernel)
    assert "test-poly" in kernels.kernel_names()
    cfg = DistillConfig(data="sample", kernel="test-poly", kernel_params={"c": 0.5}, ipc=2, steps=4,
                        max_per_class=20, lam=1e-2, eval_every=0, snapshot_every=0, lr=0.05).validate()
    ds = sample_dataset(seed=cfg.seed, holdout_fraction=cfg.holdout_fraction)

    estimate = estimate_run(cfg, ds.describe(), with_time=True)
    assert estimate.fits and estimate.memory_bytes > 0
    assert estimate.seconds_hint is not None and estimate.seconds_hint > 0   # timed on a small block
    assert estimate.storage == "dense" and estimate.operator_bytes == estimate.n_train ** 2 * 8

    events = list(run(cfg, dataset=ds))
    done = events[-1]
    assert isinstance(done, Done) and done.reason == "finished"
    gaps = [e.gap for e in events if isinstance(e, Step)]
    assert len(gaps) == 4 and all(math.isfinite(g) and g >= -1e-6 for g in gaps)
    assert done.result.config.kernel == "test-poly" and done.result.config.kernel_params == {"c": 0.5}
    assert math.isfinite(done.metrics["radius"])

    out = export_distilled(done.result, tmp_path / "poly")
    loaded = load_distilled(out)
    assert loaded.config.kernel == "test-poly" and loaded.config.kernel_params == {"c": 0.5}
    np.testing.assert_array_equal(loaded.images, done.result.images)
    # the exported set, fed to the registered kernel, gives the kernel matrix the run certified with
    k = kernels.make_kernel("test-poly", **loaded.config.kernel_params)
    x = torch.from_numpy(loaded.images).permute(0, 3, 1, 2).double()
    assert torch.allclose(k(x), PolyKernel(c=0.5)(x))


def test_unknown_kernel_costs_fall_back_to_the_kernel_base():
    k = PolyKernel()
    assert k.feature_dim((1, 8, 8)) is None and k.pair_cost((1, 8, 8)) is None
    assert k.pair_bytes((1, 8, 8), torch.float64, True) == 4 * 8
    assert k.tile_rows_for(10_000, 10_000, (1, 8, 8), torch.float64, False) == k.tile_bytes // (4 * 8 * 10_000)
