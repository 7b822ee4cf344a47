"""The outcome of a distillation run: the distilled set plus everything needed to reproduce it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.config import DistillConfig


@dataclass
class DistillResult:
    """A distilled set.

    Shapes (m = IPC × number of classes, C = number of classes):
    - ``images``: float32 (m, H, W, channels), the preprocessed space the kernel sees;
    - ``labels``: int64 (m,), class index into ``classes``;
    - ``targets``: float32 (m, C), the label vectors used by the loss (one-hot, ±1 one-vs-rest,
      or learned soft/real labels);
    - ``alpha``: float64 (m, C), feasible synthetic dual variables α̃ (mean form);
    - ``preprocess``: an :class:`engine.data.preprocess.Preprocessor` mapping pixels ↔ ``images``.
    """

    config: DistillConfig
    classes: list[str]
    images: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    alpha: np.ndarray
    preprocess: Any
    metrics: dict[str, Any] = field(default_factory=dict)
    curves: list[dict[str, float]] = field(default_factory=list)
    dataset: dict[str, Any] = field(default_factory=dict)     # description + fingerprint
    timings: dict[str, float] = field(default_factory=dict)   # seconds per phase
    device: str = "cpu"
    outcome: str = "finished"     # "stopped": ended early on request, after metrics["steps"] of config.steps

    def pixels(self) -> np.ndarray:
        """uint8 (m, H, W, channels) images in pixel space (the preprocessing inverted and clipped)."""
        return self.preprocess.to_uint8(self.images)
