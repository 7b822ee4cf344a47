"""The ReLU map's angle term (engine.kernels.angle): both formulas against float64 atan2, and the choice
between them measured on the machine that runs."""
import math
import os
import platform
import subprocess
import sys

import pytest
import torch

from engine.kernels import angle


def _angles(dtype):
    theta = torch.cat([torch.linspace(0, math.pi, 1001, dtype=torch.float64),
                       torch.tensor([0.0, 1e-30, 1e-8, math.pi / 2, math.pi - 1e-8], dtype=torch.float64)])
    radius = torch.logspace(-3, 3, theta.numel(), dtype=torch.float64)
    s, q = radius * theta.sin(), radius * theta.cos()
    s[0] = 0.0                                     # the diagonal of k(x, x): s written as 0, q > 0
    q[theta.numel() - 2] = 0.0                     # cos θ exactly 0
    return s.to(dtype), q.to(dtype)


@pytest.mark.parametrize("how", angle.METHODS)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-15), (torch.float32, 4e-7)])
@pytest.mark.parametrize("negate", [False, True])
def test_both_formulas_give_pi_minus_atan2(how, dtype, tol, negate):
    s, q = _angles(dtype)
    want = math.pi - torch.atan2(s.double(), q.double())
    got = angle.complement_into(s, q, torch.empty_like(q), negate=negate, how=how).double()
    assert torch.isfinite(got).all()
    assert ((got if not negate else -got) - want).abs().max().item() <= tol * math.pi
    assert (-got[0] if negate else got[0]).item() == torch.tensor(math.pi, dtype=dtype).item()   # θ = 0 exactly


def test_the_choice_is_measured_once_per_dtype_and_cuda_takes_atan2(monkeypatch):
    monkeypatch.setattr(angle, "_chosen", {})
    first = angle.method(torch.float32)
    assert first in angle.METHODS
    assert list(angle._chosen) == [("cpu", torch.float32, torch.get_num_threads())]   # per thread count
    monkeypatch.setattr(angle, "_measure", lambda *a, **k: pytest.fail("measured twice"))
    assert angle.method(torch.float32) == first
    assert angle.method(torch.float64, "cuda") == "atan2"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 instruction sets")
def test_without_simd_the_measurement_takes_atan():
    """ATEN_CPU_CAPABILITY=default leaves torch's atan2 scalar (9.9 ns an entry against 1.2 for atan on
    an AMD EPYC): the measurement must see it. With AVX-512 atan2 took 0.74 ns, and is taken there."""
    code = "import torch; from engine.kernels import angle; print(angle.method(torch.float32), angle.method(torch.float64))"
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.split() == ["atan", "atan"]
