"""The single, versioned configuration of a distillation run.

The GUI form is bound to it, the CLI reads it, and every export's ``manifest.json`` stores it, so a
run can be reproduced from the manifest alone.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

MODES = ("dgkip", "kip")
LOSSES = ("squared", "logistic", "hinge", "squared-hinge", "cross-entropy")
KERNELS = ("linear", "rbf", "nngp-fc", "ntk-fc", "nngp-conv", "ntk-conv", "rf-fc", "rf-conv")
ALPHA_MODES = ("joint", "exact")
INITS = ("real", "noise", "kmeans")
OPTIMIZERS = ("adam", "sgd")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "float64")
PREPROCESS = ("standardize", "zca")
TEACHERS = ("auto", "exact", "nystrom")
CENTRE_SELECTIONS = ("uniform", "kmeans++")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass
class DistillConfig:
    """Everything that defines a run. Units: ``lam`` is the mean-form ridge λ (dimensionless),
    ``lr`` is in preprocessed-pixel units per step, ``memory_budget_gb`` in GiB."""

    schema_version: int = SCHEMA_VERSION
    mode: str = "dgkip"                 # "dgkip" (duality gap at the teacher) or "kip" (KRR target loss)
    data: str = "sample"                # dataset path, or "sample" for the built-in digits
    test_data: str | None = None        # explicit test split; None = the dataset's own or a held-out part
    holdout_fraction: float = 0.2       # stratified test fraction when no test split exists
    max_per_class: int | None = None    # cap on real training images per class (None = all)
    classes: list[str] | None = None    # class names to use (None = all)
    ipc: int = 1                        # synthetic images per class
    loss: str = "cross-entropy"
    kernel: str = "ntk-fc"
    kernel_params: dict[str, Any] = field(default_factory=dict)
    lam: float = 1e-3
    steps: int = 200
    optimizer: str = "adam"
    lr: float = 0.01
    alpha_mode: str = "exact"           # "exact" inner maximisation or "joint" gradient steps
    learn_labels: bool = False          # squared / cross-entropy only
    init: str = "real"
    init_from: str | None = None        # an exported distilled folder to continue from (overrides init)
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    preprocess: str = "standardize"
    zca_reg: float = 0.1                # ZCA regulariser, relative to the mean eigenvalue
    teacher_tol: float = 1e-6           # certified relative duality gap of the teacher
    teacher_max_iter: int = 200
    teacher: str = "auto"               # "exact" (all n points), "nystrom" (M centres) or "auto" (exact when it fits)
    centres: int | None = None          # Nyström centres M (None = the largest number that fits the budget)
    centre_selection: str = "uniform"   # class-balanced uniform sample, or kernel k-means++ seeding
    certify_exact: bool = False         # Nyström: also bound the distance to the exact full-data teacher
    memory_budget_gb: float = 4.0
    eval_every: int = 50                # certificates + kernel test accuracy every k steps (0 = end only)
    snapshot_every: int = 10            # image snapshot events every k steps
    kip_batch: int = 2000               # KIP: real target points sampled per step

    # ------------------------------------------------------------------ validation
    def validate(self) -> "DistillConfig":
        """Raise :class:`ConfigError` naming the first invalid field; return ``self`` when valid."""
        def choice(name: str, options: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in options:
                raise ConfigError(name, f"{value!r} is not one of {', '.join(options)}")

        if self.schema_version > SCHEMA_VERSION:
            raise ConfigError("schema_version", f"{self.schema_version} is newer than this app "
                              f"({SCHEMA_VERSION}); update DGKIP Studio")
        for name, options in (("mode", MODES), ("loss", LOSSES), ("kernel", KERNELS),
                              ("alpha_mode", ALPHA_MODES), ("init", INITS), ("optimizer", OPTIMIZERS),
                              ("device", DEVICES), ("dtype", DTYPES), ("preprocess", PREPROCESS),
                              ("teacher", TEACHERS), ("centre_selection", CENTRE_SELECTIONS)):
            choice(name, options)
        positive_ints = ("ipc", "steps", "teacher_max_iter", "kip_batch")
        for name in positive_ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(name, f"must be a whole number ≥ 1 (got {v!r})")
        for name in ("eval_every", "snapshot_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ConfigError(name, f"must be a whole number ≥ 0 (got {v!r})")
        for name in ("lam", "lr", "teacher_tol", "memory_budget_gb", "zca_reg"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0 or v != v or v == float("inf"):
                raise ConfigError(name, f"must be a positive number (got {v!r})")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError("holdout_fraction", f"must be between 0 and 1 (got {self.holdout_fraction!r})")
        if self.max_per_class is not None and self.max_per_class < 1:
            raise ConfigError("max_per_class", "must be ≥ 1 or empty (no cap)")
        if self.centres is not None and (not isinstance(self.centres, int) or isinstance(self.centres, bool)
                                         or self.centres < 2):
            raise ConfigError("centres", f"must be a whole number ≥ 2 or empty (the largest that fits; got {self.centres!r})")
        if self.classes is not None and len(self.classes) < 2:
            raise ConfigError("classes", "choose at least two classes (or leave empty for all)")
        if self.mode == "kip" and self.loss != "squared":
            raise ConfigError("loss", "KIP mode is defined for the squared loss only; choose 'squared'")
        if self.learn_labels and self.loss not in ("squared", "cross-entropy"):
            raise ConfigError("learn_labels", "label learning needs the squared or cross-entropy loss")
        if not isinstance(self.kernel_params, dict):
            raise ConfigError("kernel_params", "must be a mapping of parameter names to numbers")
        return self

    # ------------------------------------------------------------------ JSON round-trip
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DistillConfig":
        """Build from a mapping, rejecting unknown keys by name (typos must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown setting (known: {', '.join(sorted(known))})")
        cfg = cls(**data)
        if cfg.classes is not None:
            cfg.classes = [str(c) for c in cfg.classes]
        return cfg

    @classmethod
    def from_json(cls, text: str) -> "DistillConfig":
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "DistillConfig":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from exc
        try:
            return cls.from_json(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("config", f"{path} is not valid JSON (line {exc.lineno}): {exc.msg}") from exc

    def replace(self, **changes: Any) -> "DistillConfig":
        return dataclasses.replace(self, **changes)
