"""``dgkip-engine bench --suite svm``: the hinge teacher against scikit-learn's libsvm.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

KERNEL, KERNEL_PARAMS, LAM, PAIR = "ntk-fc", {"depth": 1}, 1e-3, ("3", "5")


def mnist_problem(datasets_dir: str | Path, classes: tuple[str, ...] | None = PAIR, cap: int | None = None
                  ) -> dict[str, Any] | None:
    """The preprocessed MNIST training images of ``classes`` (all when None; at most ``cap`` per class)
    as the teacher sees them (engine.distill's data path), the float64 training kernel and the test
    kernel rows; None when the MNIST files are absent."""
    from engine.config import DistillConfig
    from engine.data.preprocess import Preprocessor
    from engine.distill import prepare_dataset, to_nchw
    from engine.kernels import make_kernel

    root = Path(datasets_dir)
    train, test = root / "mnist-train.npz", root / "mnist-test.npz"
    if not (train.is_file() and test.is_file()):
        return None
    cfg = DistillConfig(data=str(train), test_data=str(test), classes=list(classes) if classes else None,
                        max_per_class=cap, kernel=KERNEL, kernel_params=dict(KERNEL_PARAMS), lam=LAM,
                        loss="hinge").validate()
    ds = prepare_dataset(cfg, None)
    pre = Preprocessor.fit(ds.x_train[:], method=cfg.preprocess, zca_reg=cfg.zca_reg)
    x = to_nchw(pre.transform(ds.x_train[:])).to(torch.float64)
    xt = to_nchw(pre.transform(ds.x_test[:])).to(torch.float64)
    kernel = make_kernel(cfg.kernel, **cfg.kernel_params).with_data_defaults(x)
    with torch.no_grad():
        K = kernel(x)
        Kt = kernel(xt, x)
    return {"K": K, "K_test": Kt, "y": torch.from_numpy(ds.y_train.astype(np.int64)),
            "y_test": torch.from_numpy(ds.y_test.astype(np.int64)), "classes": list(ds.classes),
            "kernel": cfg.kernel, "kernel_params": kernel.params(), "preprocess": cfg.preprocess,
            "lam": cfg.lam}
