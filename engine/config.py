"""The single, versioned configuration of a distillation run.

The GUI form is bound to it, the CLI reads it, and every export's ``manifest.json`` stores it, so a
run can be reproduced from the manifest alone.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.text import printable, shown

SCHEMA_VERSION = 2                  # 2: kip_ridge (issue 17); a version-1 config without it is "fixed"
MAX_CONFIG_BYTES = 1 << 20          # a settings file is a few hundred bytes; refuse anything over 1 MiB
MAX_COUNT = 2**31 - 1               # largest whole-number setting (ipc, steps, …): fits every index type
MAX_SEED = 2**32 - 1                # numpy's and torch's seeds both accept 0 … 2³² − 1
MAX_PATH_CHARS = 4096               # PATH_MAX on Linux
MAX_CLASSES = 100_000               # a class list longer than this is a mistake (ImageNet-21k has 21,841)

MODES = ("dgkip", "kip")
LOSSES = ("squared", "logistic", "hinge", "squared-hinge", "cross-entropy")
KERNELS = ("linear", "rbf", "nngp-fc", "ntk-fc", "nngp-conv", "ntk-conv", "rf-fc", "rf-conv")
ALPHA_MODES = ("joint", "exact")
INITS = ("real", "noise", "kmeans")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "float64")
PREPROCESS = ("standardize", "zca")
TEACHERS = ("auto", "exact", "nystrom")
CENTRE_SELECTIONS = ("uniform", "kmeans++")
KIP_RIDGES = ("trace", "fixed")      # engine.kip.RIDGES


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class _Spec:
    """The type and range of one field: ``kind`` is "int", "float", "bool", "choice" or "path";
    ``lo``/``hi`` bound numbers (``open_lo``/``open_hi``: strictly), ``optional`` allows ``None``,
    ``example`` is shown in the fix."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False
    optional: bool = False
    choices: tuple[str, ...] = ()
    example: str = ""

    def _range(self) -> str:
        def number(v: float) -> str:
            return f"{int(v):,}" if self.kind == "int" or (v == int(v) and abs(v) < 1e7) else f"{v:g}"

        parts = []
        if self.lo is not None and not (self.lo == 0 and self.open_lo):
            parts.append(f"{'>' if self.open_lo else '≥'} {number(self.lo)}")
        if self.hi is not None:
            parts.append(f"{'<' if self.open_hi else '≤'} {number(self.hi)}")
        return " and ".join(parts)

    def check(self, name: str, v: Any) -> None:
        if v is None and self.optional:
            return
        empty = " (or empty)" if self.optional else ""
        if self.kind == "choice":
            if not isinstance(v, str) or v not in self.choices:
                raise ConfigError(name, f"{shown(v)} is not one of {', '.join(self.choices)}")
        elif self.kind == "bool":
            if not isinstance(v, bool):
                raise ConfigError(name, f"must be true or false (got {shown(v)})")
        elif self.kind == "path":
            if not isinstance(v, str) or not v.strip() or "\0" in v or len(v) > MAX_PATH_CHARS:
                raise ConfigError(name, f"must be a file or folder path as text{empty} (got {shown(v)}); "
                                  f"e.g. {self.example or 'data/my-dataset'}")
        else:
            whole = self.kind == "int"
            ok = _is_int(v) if whole else _is_number(v)
            if ok:
                lo_ok = self.lo is None or (v > self.lo if self.open_lo else v >= self.lo)
                hi_ok = self.hi is None or (v < self.hi if self.open_hi else v <= self.hi)
                ok = lo_ok and hi_ok
            if not ok:
                what = ("a positive " if self.lo == 0 and self.open_lo else "a ") + ("whole number" if whole else "number")
                raise ConfigError(name, f"must be {what} {self._range()}{empty} (got {shown(v)})"
                                  + (f"; e.g. {self.example}" if self.example else ""))


def _choice(options: tuple[str, ...]) -> _Spec:
    return _Spec("choice", choices=options)


_FIELDS: dict[str, _Spec] = {
    "mode": _choice(MODES), "loss": _choice(LOSSES), "kernel": _choice(KERNELS),
    "alpha_mode": _choice(ALPHA_MODES), "init": _choice(INITS), "optimizer": _choice(OPTIMIZERS),
    "lr_schedule": _choice(LR_SCHEDULES),
    "warmup_steps": _Spec("int", 0, MAX_COUNT, example="0 (no warm-up) or 50"),
    "kip_weight": _Spec("float", 0.0, 1.0, example="0 (pure DGKIP), 0.5, or 1 (KIP's loss only, still certified)"),
    "device": _choice(DEVICES), "dtype": _choice(DTYPES), "preprocess": _choice(PREPROCESS),
    "teacher": _choice(TEACHERS), "centre_selection": _choice(CENTRE_SELECTIONS),
    "kip_ridge": _choice(KIP_RIDGES),
    "data": _Spec("path", example="'sample' or data/mnist-train.npz"),
    "test_data": _Spec("path", optional=True), "init_from": _Spec("path", optional=True, example="out/digits"),
    "holdout_fraction": _Spec("float", 0.0, 1.0, open_lo=True, open_hi=True, example="0.2"),
    "max_per_class": _Spec("int", 1, MAX_COUNT, optional=True, example="1000"),
    "ipc": _Spec("int", 1, MAX_COUNT, example="10"),
    "lam": _Spec("float", 0.0, 1e6, open_lo=True, example="0.001"),
    "steps": _Spec("int", 1, MAX_COUNT, example="200"),
    "lr": _Spec("float", 0.0, 1e6, open_lo=True, example="0.01"),
    "learn_labels": _Spec("bool"), "certify_exact": _Spec("bool"),
    "seed": _Spec("int", 0, MAX_SEED, example="0"),
    "zca_reg": _Spec("float", 0.0, 1e6, open_lo=True, example="0.1"),
    "teacher_tol": _Spec("float", 0.0, 1.0, open_lo=True, example="1e-6"),
    "teacher_max_iter": _Spec("int", 1, MAX_COUNT, example="200"),
    "centres": _Spec("int", 2, MAX_COUNT, optional=True, example="4096"),
    "memory_budget_gb": _Spec("float", 0.0, 2.0**20, open_lo=True, example="4"),
    "eval_every": _Spec("int", 0, MAX_COUNT, example="50 (0 = at the end only)"),
    "snapshot_every": _Spec("int", 0, MAX_COUNT, example="10"),
    "kip_batch": _Spec("int", 1, MAX_COUNT, example="2000"),
}


def _check_classes(classes: Any) -> None:
    """``None`` or a list of ≥ 2 distinct, non-empty class names (text)."""
    fix = 'write a list of class names, e.g. ["cat", "dog"] (or leave it empty for all classes)'
    if classes is None:
        return
    if not isinstance(classes, list):
        raise ConfigError("classes", f"must be a list of class names, not {type(classes).__name__} "
                          f"{shown(classes)}; {fix}")
    if len(classes) > MAX_CLASSES:
        raise ConfigError("classes", f"lists {len(classes):,} classes (at most {MAX_CLASSES:,}); {fix}")
    for c in classes:
        if not isinstance(c, str) or not c or "\0" in c:
            raise ConfigError("classes", f"{shown(c)} is not a class name; {fix}")
    seen: set[str] = set()
    for c in classes:
        if c in seen:
            raise ConfigError("classes", f"{shown(c)} is listed twice; name each class once")
        seen.add(c)
    if len(classes) < 2:
        raise ConfigError("classes", "choose at least two classes (or leave empty for all)")


def _check_kernel_params(kernel: str, params: Any) -> None:
    """A mapping of parameter names to JSON scalars that the kernel ``kernel`` accepts."""
    if not isinstance(params, dict):
        raise ConfigError("kernel_params", f"must be a mapping of parameter names to numbers, e.g. "
                          f'{{"depth": 3}} (got {shown(params)})')
    for key, value in params.items():
        ok = value is None or isinstance(value, (bool, str)) or _is_number(value)
        if not isinstance(key, str) or not ok or (isinstance(value, str) and len(value) > 100):
            raise ConfigError("kernel_params", f"{shown(key)}: {shown(value)} is not a number, true/false "
                              f"or a short word; e.g. {{\"depth\": 3}}")
    from engine.kernels import make_kernel      # the kernel owns its parameters' meaning and ranges

    try:
        make_kernel(kernel, **params)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ConfigError("kernel_params", f"kernel {kernel!r} refuses {shown(params)} ({printable(exc)}); "
                          "fix or remove the parameter (see the kernels in the README)") from exc


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
    lr_schedule: str = "constant"       # "constant", or "cosine": decays from lr towards 0 over the steps
    warmup_steps: int = 0               # linear warm-up of the step size over the first k steps
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
    kip_batch: int = 2000               # KIP: real target points per step (epochs without replacement)
    # KIP's ridge on K_SS: "trace" = λ·tr(K_SS)/m (published KIP; λ is its ``reg``), "fixed" = λ·m (the
    # mean-form λ, the model the app certifies). Configs of schema version 1 predate it and read as "fixed".
    kip_ridge: str = "trace"
    kip_weight: float = 0.0             # DGKIP: optimise (1 − w)·gap + w·KIP loss (squared loss); certificates unchanged

    # ------------------------------------------------------------------ validation
    def validate(self) -> "DistillConfig":
        """Check every field's type and range, then the fields' consistency; raise
        :class:`ConfigError` naming the first invalid field, its value and the fix; return ``self``."""
        if not _is_int(self.schema_version) or self.schema_version < 1:
            raise ConfigError("schema_version", f"must be a whole number ≥ 1 (got {shown(self.schema_version)}); "
                              f"this app writes {SCHEMA_VERSION}")
        if self.schema_version > SCHEMA_VERSION:
            raise ConfigError("schema_version", f"{self.schema_version} is newer than this app "
                              f"({SCHEMA_VERSION}); update DGKIP Studio")
        for name, spec in _FIELDS.items():
            spec.check(name, getattr(self, name))
        _check_classes(self.classes)
        _check_kernel_params(self.kernel, self.kernel_params)
        if self.mode == "kip" and self.loss != "squared":
            raise ConfigError("loss", "KIP mode is defined for the squared loss only; choose 'squared'")
        if self.learn_labels and self.loss not in ("squared", "cross-entropy"):
            raise ConfigError("learn_labels", "label learning needs the squared or cross-entropy loss")
        if self.kip_weight > 0 and self.mode != "dgkip":
            raise ConfigError("kip_weight", f"{self.kip_weight:g} mixes KIP's loss into DGKIP's objective; in KIP "
                              "mode it has no meaning — set it to 0, or choose mode 'dgkip'")
        if self.kip_weight > 0 and self.loss != "squared":
            raise ConfigError("kip_weight", "the combined objective adds KIP's squared-loss kernel ridge loss, so "
                              "it needs the squared loss; choose 'squared' or set kip_weight to 0")
        if self.warmup_steps >= self.steps and self.warmup_steps > 0:
            raise ConfigError("warmup_steps", f"{self.warmup_steps} warm-up steps leave none of the {self.steps} "
                              "steps at the full step size; use fewer warm-up steps than steps")
        if self.teacher == "exact" and self.centres is not None:
            raise ConfigError("centres", f"{self.centres} centres were given but the teacher is 'exact' (all "
                              "points); leave centres empty, or choose the 'nystrom' or 'auto' teacher")
        return self

    # ------------------------------------------------------------------ JSON round-trip
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DistillConfig":
        """Build from a mapping, rejecting unknown keys by name (typos must not pass silently)."""
        if not isinstance(data, dict):
            raise ConfigError("config", f"must be a JSON object of settings such as {{\"ipc\": 10}}, "
                              f"not {type(data).__name__} {shown(data)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted((k for k in data if k not in known), key=str)
        if unknown:
            raise ConfigError(printable(unknown[0]), f"unknown setting (known: {', '.join(sorted(known))})")
        data = dict(data)
        if "kip_ridge" not in data and _is_int(data.get("schema_version")) and data["schema_version"] < 2:
            data["kip_ridge"] = "fixed"                 # recipes written before the option ran KIP with λ·m
        if isinstance(data.get("classes"), list):       # class names written as JSON numbers: [3, 5]
            data["classes"] = [str(c) if _is_int(c) else c for c in data["classes"]]
        return cls(**data).validate()

    @classmethod
    def from_json(cls, text: str) -> "DistillConfig":
        """Parse and validate; bad JSON (also nesting too deep, numbers too long) is a :class:`ConfigError`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("config", f"is not valid JSON (line {exc.lineno}): {exc.msg}") from exc
        except (RecursionError, ValueError) as exc:
            raise ConfigError("config", f"cannot be read ({type(exc).__name__}: nested too deeply or a number "
                              "too long); save it again from the app or with --save-config") from exc
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "DistillConfig":
        where = printable(os.fspath(path))
        try:
            size = os.stat(path).st_size
            if size > MAX_CONFIG_BYTES:
                raise ConfigError("config", f"{where} is {size:,} bytes, too large for a settings file "
                                  f"(at most {MAX_CONFIG_BYTES:,}); choose the JSON the app saved")
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("config", f"cannot read {where}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError("config", f"{where} is not UTF-8 text; choose the JSON the app saved") from exc
        try:
            return cls.from_json(text)
        except ConfigError as exc:
            if exc.field != "config":
                raise
            raise ConfigError("config", f"{where} {str(exc).removeprefix('config: ')}") from exc

    def replace(self, **changes: Any) -> "DistillConfig":
        return dataclasses.replace(self, **changes)
