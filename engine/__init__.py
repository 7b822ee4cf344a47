"""DGKIP engine: certified dataset distillation by duality-gap kernel inducing points.

Pure PyTorch/NumPy. This package never imports Qt (enforced by ``tests/test_layering.py``).

Public entry points::

    from engine.config import DistillConfig
    from engine.distill import run            # step iterator of events (engine.events)
    from engine.kernels import make_kernel
    from engine.losses import make_loss
    from engine.plan import estimate_run  # memory/time estimate before a run
    from engine import ResourceError          # a run over the memory budget (engine.operators)
"""

__version__ = "0.1.0"

__all__ = ["ResourceError", "__version__"]


def __getattr__(name: str):
    """``engine.ResourceError`` without importing torch when only ``engine.config`` is needed."""
    if name == "ResourceError":
        from engine.operators import ResourceError
        return ResourceError
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
