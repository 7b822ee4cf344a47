"""DGKIP engine: certified dataset distillation by duality-gap kernel inducing points.

Pure PyTorch/NumPy. This package never imports Qt (enforced by ``tests/test_layering.py``).

Public entry points::

    from engine.config import DistillConfig
    from engine.distill import run            # step iterator of events (engine.events)
    from engine.kernels import make_kernel
    from engine.losses import make_loss
"""

__version__ = "0.1.0"
