"""Kernels report their own costs (engine.kernels.base): the closed forms agree with what the kernels
compute, and every built-in kernel knows its per-entry or per-image work (the plan times only unknown
kernels)."""
import pytest
import torch

from engine.kernels import kernel_names, make_kernel
from engine.kernels.base import Kernel

CASES = [("linear", {}, (1, 8, 8)), ("linear", {"bias": 0.5}, (3, 4, 4)), ("rf-fc", {"width": 16, "n_models": 3}, (1, 8, 8)),
         ("rf-fc", {"width": 8, "n_models": 2, "depth": 3}, (3, 5, 5)), ("rf-conv", {"width": 4, "n_models": 2, "depth": 2}, (3, 9, 7))]


@pytest.mark.parametrize("name, params, chw", CASES)
def test_feature_dim_is_the_width_of_the_features(name, params, chw):
    k = make_kernel(name, **params)
    with torch.no_grad():
        width = k.features(torch.randn((2,) + chw, dtype=torch.float64)).shape[1]
    assert k.feature_dim(chw) == width == Kernel.feature_dim(k, chw)     # closed form = the generic probe


def test_rf_conv_refuses_images_too_small_for_its_depth():
    with pytest.raises(ValueError, match="at least"):
        make_kernel("rf-conv", depth=3).feature_dim((1, 7, 7))


@pytest.mark.parametrize("name", kernel_names())
def test_built_in_kernels_know_their_costs(name):
    k = make_kernel(name)
    chw = (1, 16, 16)
    if not k.gram_from_features:      # entries computed pair by pair: the plan prices each entry
        flops, units = k.pair_cost(chw)
        assert flops == 2 * 256 and units >= 0
    assert k.pair_bytes(chw, torch.float32, True) >= k.pair_bytes(chw, torch.float32, False) > 0
    assert (k.feature_dim(chw) is None) == (not k.explicit)
    if k.explicit:
        rates = {"flops": 1e10, "flops32": 2e10, "simple": 1e-9}
        assert k.feature_seconds(chw, rates) > 0
        assert k.feature_bytes(100, chw, torch.float64, False) >= 100 * k.feature_dim(chw) * 8
    assert k.diag_bytes(100, chw) > 0


def test_deeper_network_kernels_cost_more_per_entry():
    for name in ("nngp-fc", "ntk-fc", "nngp-conv", "ntk-conv"):
        shallow, deep = make_kernel(name, depth=1), make_kernel(name, depth=4)
        assert deep.pair_cost((3, 8, 8))[1] > shallow.pair_cost((3, 8, 8))[1]
