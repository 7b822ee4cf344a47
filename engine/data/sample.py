"""The built-in sample dataset: scikit-learn's bundled handwritten digits (no download).

1,797 grayscale 8×8 images, classes "0" … "9"; values 0..16 scaled to uint8 as round(v·255/16).
"""
from __future__ import annotations

import numpy as np

from engine.data.build import build_dataset
from engine.data.dataset import Dataset
from engine.data.formats import RawData, array_modes

SAMPLE = "sample"   # the path string that loads this dataset


def sample_raw() -> RawData:
    """The digits as uint8 (1797, 8, 8, 1) with int64 labels 0..9, no test split."""
    from sklearn.datasets import load_digits    # imported here: scikit-learn loads slowly

    digits = load_digits()
    x = np.rint(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    return RawData("sample", "digits (sample)", [str(i) for i in range(10)], x,
                   digits.target.astype(np.int64), modes=array_modes(len(x), 1))


def sample_dataset(seed: int = 0, holdout_fraction: float = 0.2) -> Dataset:
    """The digits with a seeded, stratified held-out test split."""
    return build_dataset(sample_raw(), source=SAMPLE, holdout_fraction=holdout_fraction, seed=seed)
