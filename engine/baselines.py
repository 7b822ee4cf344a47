"""Class-balanced real-data baselines of the same size as a distilled set (IPC images per class).

Both take images ``x`` (N, ...) in the preprocessed float32 space and labels ``y`` int (N,), and
return ``ipc`` items per class, grouped by class in ascending label order: images shaped
(C·ipc, ...) float32 and labels int64 (C·ipc,).
"""
from __future__ import annotations

import numpy as np


def _class_indices(y: np.ndarray, ipc: int) -> list[tuple[int, np.ndarray]]:
    """(label, indices of that class) for every label in ``y``, checking each has ≥ ``ipc`` items."""
    if ipc < 1:
        raise ValueError(f"ipc must be ≥ 1 (got {ipc})")
    out = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        if len(idx) < ipc:
            raise ValueError(f"class {label} has {len(idx)} images, fewer than ipc = {ipc}")
        out.append((int(label), idx))
    return out


def random_subset(x: np.ndarray, y: np.ndarray, ipc: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``ipc`` real images per class drawn without replacement with ``np.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    picked = np.concatenate([rng.choice(idx, size=ipc, replace=False) for _, idx in _class_indices(y, ipc)])
    return x[picked].astype(np.float32), np.asarray(y, dtype=np.int64)[picked]


def kmeans_centres(x: np.ndarray, y: np.ndarray, ipc: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the ``ipc`` centres of k-means (scikit-learn, ``n_init=3``, ``random_state=seed``)
    on the flattened images, reshaped back to image shape."""
    from sklearn.cluster import KMeans          # imported here: scikit-learn loads slowly (~0.9 s)

    centres, labels = [], []
    for label, idx in _class_indices(y, ipc):
        flat = x[idx].reshape(len(idx), -1).astype(np.float32)
        km = KMeans(n_clusters=ipc, n_init=3, random_state=seed).fit(flat)
        centres.append(km.cluster_centers_.astype(np.float32).reshape((ipc,) + x.shape[1:]))
        labels.append(np.full(ipc, label, dtype=np.int64))
    return np.concatenate(centres), np.concatenate(labels)
