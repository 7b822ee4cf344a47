"""The single, versioned configuration of a distillation run.

The GUI form is bound to it, the CLI reads it, and every export's ``manifest.json`` stores it, so a
run can be reproduced from the manifest alone.

Each field is declared once, with its default and its :class:`Setting` (label, help, type and range,
settings-form section, CLI flag); :data:`SETTINGS` collects them. Validation (:meth:`DistillConfig.validate`),
the settings form (``dgkip_gui.widgets.settings_panel``) and the ``distill`` flags (``engine.cli``) are generated
from them, so a new setting is one ``_setting(...)`` line here (plus a cross-field rule in ``validate``
if it has one).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from engine.output import MANIFEST, is_export
from engine.text import printable, shown

SCHEMA_VERSION = 2                  # 2: kip_ridge (issue 17); a version-1 config without it is "fixed"
MAX_CONFIG_BYTES = 1 << 20          # a settings file is a few hundred bytes; refuse anything over 1 MiB
MAX_COUNT = 2**31 - 1               # largest whole-number setting (ipc, steps, …): fits every index type
MAX_SEED = 2**32 - 1                # numpy's and torch's seeds both accept 0 … 2³² − 1
MAX_PATH_CHARS = 4096               # PATH_MAX on Linux
MAX_CLASSES = 100_000               # a class list longer than this is a mistake (ImageNet-21k has 21,841)

MODES = ("dgkip", "kip")
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
CPU_THREADS = ("auto", "one", "all")  # engine.device.StepThreads
# LOSSES and KERNELS are the names in engine.losses' and engine.kernels' registries, read when asked
# for (module __getattr__ below), so a kernel added with engine.kernels.register passes validation.

GROUPS = ("Method", "Distilled set", "Optimisation", "Advanced")    # the settings form's sections, in order


def _loss_names() -> tuple[str, ...]:
    from engine.losses import loss_names        # imported when first needed: the config itself needs no torch

    return tuple(loss_names())


def _kernel_names() -> tuple[str, ...]:
    from engine.kernels import kernel_names

    return tuple(kernel_names())


def __getattr__(name: str) -> Any:
    """``LOSSES`` and ``KERNELS``: the registries' names now (a registered kernel is included)."""
    if name == "LOSSES":
        return _loss_names()
    if name == "KERNELS":
        return _kernel_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field, self.reason = field_name, message


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
    registry: Callable[[], tuple[str, ...]] | None = None     # choices read from a registry at each check

    def options(self) -> tuple[str, ...]:
        """The allowed values of a "choice": the registry's names now, else :attr:`choices`."""
        return self.registry() if self.registry is not None else self.choices

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
            options = self.options()
            if not isinstance(v, str) or v not in options:
                raise ConfigError(name, f"{shown(v)} is not one of {', '.join(options)}")
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


def _registry_choice(names: Callable[[], tuple[str, ...]]) -> _Spec:
    return _Spec("choice", registry=names)


@dataclass(frozen=True, eq=False)
class Setting:
    """The one declaration of a :class:`DistillConfig` field, from which validation, the settings form
    (``dgkip_gui.widgets.settings_panel``) and the CLI flags (``engine.cli``) are generated.

    ``label`` names it in the form, ``help`` explains it (the form's tooltip, the flag's help);
    ``spec`` is its type and range (``None``: checked by its own rule in :meth:`DistillConfig.validate`,
    with ``kind_`` saying what it holds: "names" a list of class names, "params" a kernel-parameter
    mapping, "version" the schema version); ``group`` is the form section (one of :data:`GROUPS`,
    ``None``: not on the form); ``choice_labels`` are the form's words for a choice's values.
    ``flag`` is the CLI flag ("" = ``--`` + the name with dashes, ``None`` = none). Form hints:
    ``widget`` overrides the widget the kind implies ("fraction": a 0.01 … 0.99 spin box),
    ``form_max`` caps a spin box below the spec's bound, ``placeholder`` is an empty field's hint,
    ``wide`` puts a check box across both form columns. ``name`` is filled in from the field."""

    label: str
    help: str
    spec: _Spec | None = None
    kind_: str = ""
    group: str | None = None
    choice_labels: Mapping[str, str] = field(default_factory=dict)
    flag: str | None = ""
    widget: str = ""
    form_max: int | None = None
    placeholder: str = ""
    wide: bool = False
    name: str = ""

    @property
    def kind(self) -> str:
        """"int", "float", "bool", "choice", "path", or (no spec) "names", "params", "version"."""
        return self.spec.kind if self.spec is not None else self.kind_

    @property
    def cli_flag(self) -> str | None:
        """The CLI flag that sets this field, e.g. ``--max-per-class`` (``None``: not settable there)."""
        if self.flag is None:
            return None
        return self.flag or "--" + self.name.replace("_", "-")


def _setting(default: Any = MISSING, *, factory: Callable[[], Any] | Any = MISSING, **declaration: Any) -> Any:
    """A :class:`DistillConfig` field with its default and its :class:`Setting` declaration."""
    return field(default=default, default_factory=factory, metadata={"setting": Setting(**declaration)})


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
        try:                                            # a name the kernel does not take: say which it takes
            accepted = make_kernel(kernel).params()
        except (ValueError, TypeError, OverflowError):
            accepted = None
        unknown = sorted(set(params) - set(accepted)) if accepted is not None else []
        if unknown and "unexpected keyword" in str(exc):
            raise ConfigError("kernel_params", f"kernel {kernel!r} has no parameter {shown(unknown[0])}; its "
                              f"parameters are {', '.join(accepted) or 'none'}") from exc
        raise ConfigError("kernel_params", f"kernel {kernel!r} refuses {shown(params)} ({printable(exc)}); "
                          "fix or remove the parameter") from exc


@dataclass
class DistillConfig:
    """Everything that defines a run. Units: ``lam`` is the mean-form ridge λ (dimensionless),
    ``lr`` is in preprocessed-pixel units per step, ``memory_budget_gb`` in GiB.

    Each field is declared once, with its :class:`Setting` (label, help, type and range, form section,
    CLI flag); :data:`SETTINGS` lists them in this order, which is also the settings form's order."""

    schema_version: int = _setting(
        SCHEMA_VERSION, label="Schema version", kind_="version", flag=None,
        help="Version of the settings format this config was written in (set by the app, not by hand).")
    data: str = _setting(
        "sample", label="Dataset", spec=_Spec("path", example="'sample' or data/mnist-train.npz"),
        help="Dataset folder or file, or 'sample' for the built-in handwritten digits.")
    test_data: str | None = _setting(
        None, label="Test data", spec=_Spec("path", optional=True),
        help="Explicit test split (folder or file); empty = the dataset's own, or a held-out part of it.")
    init_from: str | None = _setting(
        None, label="Continue from", spec=_Spec("path", optional=True, example="out/digits"),
        help="An exported distilled folder to continue from (overrides the initialisation).")
    # -- the form's "Method" section
    mode: str = _setting(
        "dgkip", label="Mode", spec=_choice(MODES), group="Method",
        choice_labels={"dgkip": "DGKIP (duality gap)", "kip": "KIP (KRR loss)"},
        help="DGKIP minimises the certified duality gap at the teacher; KIP minimises the kernel ridge "
             "regression loss (squared loss only).")
    loss: str = _setting(
        "cross-entropy", label="Loss", spec=_registry_choice(_loss_names), group="Method",
        help="Convex loss of the kernel model being distilled (hinge = SVM, cross-entropy = multinomial logistic).")
    kernel: str = _setting(
        "ntk-fc", label="Kernel", spec=_registry_choice(_kernel_names), group="Method",
        help="Kernel of the model: NTK/NNGP of an infinitely wide ReLU network, RBF, linear or random features.")
    kernel_params: dict[str, Any] = _setting(
        factory=dict, label="Kernel parameters", kind_="params", group="Method", flag="--kernel-param",
        help="Parameters of the chosen kernel; one left unset (or empty) takes the engine's default.")
    lam: float = _setting(
        1e-3, label="λ (ridge)", spec=_Spec("float", 0.0, 1e6, open_lo=True, example="0.001"), group="Method",
        help="Ridge strength λ (mean form); the radius bound is √(2·gap/λ). KIP with the trace ridge: the "
             "published 'reg'.")
    teacher: str = _setting(
        "auto", label="Teacher", spec=_choice(TEACHERS), group="Method",
        choice_labels={"auto": "Auto (exact when it fits)", "exact": "Exact (n × n kernel)",
                       "nystrom": "Nyström (M centres)"},
        help="Exact: the teacher sees all n images through the n × n kernel. Nyström: the exact minimiser over "
             "the span of M centres, for datasets whose n × n kernel does not fit. Auto: exact when it fits "
             "the memory budget, else Nyström with the most centres that fit.")
    centres: int | None = _setting(
        None, label="Nyström centres", spec=_Spec("int", 2, MAX_COUNT, optional=True, example="4096"),
        group="Method", placeholder="most that fit",
        help="Nyström centres M (empty = the most that fit the memory budget). More centres: a stronger "
             "teacher, more memory (n × M) and time.")
    # -- "Distilled set"
    ipc: int = _setting(
        1, label="Images per class", spec=_Spec("int", 1, MAX_COUNT, example="10"), group="Distilled set",
        form_max=10_000, help="Synthetic images per class: the distilled set holds IPC × classes images.")
    init: str = _setting(
        "real", label="Initialise from", spec=_choice(INITS), group="Distilled set",
        help="Start the synthetic images from real images, from noise, or from k-means centres.")
    learn_labels: bool = _setting(
        False, label="Learn labels", spec=_Spec("bool"), group="Distilled set",
        help="Also learn the synthetic label vectors (squared and cross-entropy losses only).")
    classes: list[str] | None = _setting(
        None, label="Classes", kind_="names", group="Distilled set",
        help="Classes to distil (at least two); all checked means every class.")
    # -- "Optimisation"
    steps: int = _setting(
        200, label="Steps", spec=_Spec("int", 1, MAX_COUNT, example="200"), group="Optimisation",
        form_max=10_000_000, help="Optimisation steps over the synthetic images.")
    lr: float = _setting(
        0.01, label="Learning rate", spec=_Spec("float", 0.0, 1e6, open_lo=True, example="0.01"),
        group="Optimisation", help="Learning rate of the optimiser that moves the synthetic images.")
    lr_schedule: str = _setting(
        "constant", label="Step-size schedule", spec=_choice(LR_SCHEDULES), group="Optimisation",
        help="Step size over the run: constant, or cosine (decays from the learning rate towards 0 by the "
             "last step).")
    warmup_steps: int = _setting(
        0, label="Warm-up steps", spec=_Spec("int", 0, MAX_COUNT, example="0 (no warm-up) or 50"),
        group="Optimisation", form_max=10_000_000,
        help="Raise the step size linearly from 0 over the first k steps (0 = no warm-up).")
    kip_weight: float = _setting(
        0.0, label="KIP weight", group="Optimisation",
        spec=_Spec("float", 0.0, 1.0, example="0 (pure DGKIP), 0.5, or 1 (KIP's loss only, still certified)"),
        help="DGKIP, squared loss: optimise (1 − w)·gap + w·KIP loss (0 = pure DGKIP, 1 = KIP's loss only). "
             "Trades the certificate for accuracy; the reported gap and radius stay the certified ones.")
    preprocess: str = _setting(
        "standardize", label="Preprocessing", spec=_choice(PREPROCESS), group="Optimisation",
        choice_labels={"standardize": "Standardise", "zca": "ZCA whitening"},
        help="Pixel preprocessing before the kernel: per-feature standardisation or ZCA whitening.")
    device: str = _setting(
        "auto", label="Device", spec=_choice(DEVICES), group="Optimisation",
        help="Where the engine computes: auto picks CUDA, then Apple MPS, then the CPU.")
    dtype: str = _setting(
        "float32", label="Precision", spec=_choice(DTYPES), group="Optimisation",
        help="float64 is slower but gives tighter certificates.")
    seed: int = _setting(
        0, label="Seed", spec=_Spec("int", 0, MAX_SEED, example="0"), group="Optimisation",
        help="Random seed for initialisation and sampling: the same seed gives the same result (bit for bit "
             "on the same machine when CPU threads is one or all).")
    # -- "Advanced" (folded away in the form)
    optimizer: str = _setting(
        "adam", label="Optimiser", spec=_choice(OPTIMIZERS), group="Advanced",
        help="Optimiser for the synthetic images.")
    alpha_mode: str = _setting(
        "exact", label="Dual variables", spec=_choice(ALPHA_MODES), group="Advanced",
        help="exact: solve for the synthetic dual variables each step; joint: gradient steps alongside the images.")
    zca_reg: float = _setting(
        0.1, label="ZCA regulariser", spec=_Spec("float", 0.0, 1e6, open_lo=True, example="0.1"), group="Advanced",
        help="ZCA regulariser relative to the mean eigenvalue (larger = milder whitening).")
    holdout_fraction: float = _setting(
        0.2, label="Test hold-out", spec=_Spec("float", 0.0, 1.0, open_lo=True, open_hi=True, example="0.2"),
        group="Advanced", widget="fraction",
        help="Fraction held out as test data when the dataset has no test split (applies on load).")
    max_per_class: int | None = _setting(
        None, label="Max images per class", spec=_Spec("int", 1, MAX_COUNT, optional=True, example="1000"),
        group="Advanced", placeholder="all",
        help="Cap on real training images per class (empty = all); lowers memory and time.")
    teacher_tol: float = _setting(
        1e-6, label="Teacher tolerance", spec=_Spec("float", 0.0, 1.0, open_lo=True, example="1e-6"),
        group="Advanced", help="Relative duality gap at which the full-data (teacher) solve stops.")
    teacher_max_iter: int = _setting(
        200, label="Teacher iterations", spec=_Spec("int", 1, MAX_COUNT, example="200"), group="Advanced",
        form_max=1_000_000, help="Iteration cap of the teacher solve: Newton iterations for the smooth losses; for the "
        "hinge, sweeps of N coordinate updates per class (coordinate descent on the CPU), or 50× this many "
        "FISTA iterations (on a GPU, or where the kernel matrix is not kept). The progress counts in the "
        "solver's own unit.")
    centre_selection: str = _setting(
        "uniform", label="Centre selection", spec=_choice(CENTRE_SELECTIONS), group="Advanced",
        choice_labels={"uniform": "Class-balanced uniform", "kmeans++": "Kernel k-means++"},
        help="How the Nyström centres are chosen: a class-balanced uniform sample, or kernel "
             "k-means++ seeding (spread out; one kernel column per centre).")
    certify_exact: bool = _setting(
        False, label="Certify the distance to the exact teacher", spec=_Spec("bool"), group="Advanced", wide=True,
        help="Nyström teacher: after distilling, bound the distance to the exact full-data teacher "
             "(one pass over the n × n kernel, never stored; Stop skips it).")
    memory_budget_gb: float = _setting(
        4.0, label="Memory budget (GiB)", spec=_Spec("float", 0.0, 2.0**20, open_lo=True, example="4"),
        group="Advanced", help="Largest memory the run may use, in GiB (kernel blocks are tiled to fit).")
    cpu_threads: str = _setting(
        "auto", label="CPU threads", spec=_choice(CPU_THREADS), group="Advanced",
        choice_labels={"auto": "Auto (timed)", "one": "One", "all": "All"},
        help="Threads of the distillation steps on the CPU. auto: small steps time one thread against all "
             "on the run's own steps (after 24, then every 500) and keep all where they are at least 5 % "
             "faster, larger steps use all; the last digits can then differ between runs of one seed. "
             "one or all fix the count.")
    eval_every: int = _setting(
        50, label="Evaluate every", spec=_Spec("int", 0, MAX_COUNT, example="50 (0 = at the end only)"),
        group="Advanced", form_max=1_000_000,
        help="Compute certificates and test accuracy every k steps (0 = at the end only).")
    snapshot_every: int = _setting(
        10, label="Snapshot every", spec=_Spec("int", 0, MAX_COUNT, example="10"), group="Advanced",
        form_max=1_000_000, help="Send the synthetic images to the live view every k steps.")
    kip_batch: int = _setting(
        2000, label="KIP batch", spec=_Spec("int", 1, MAX_COUNT, example="2000"), group="Advanced",
        form_max=10_000_000,
        help="KIP mode: real target points per step, drawn without replacement (each real image once per "
             "epoch; all of them every step when the batch covers the data).")
    # Configs of schema version 1 predate kip_ridge and read as "fixed" (from_dict).
    kip_ridge: str = _setting(
        "trace", label="KIP ridge", spec=_choice(KIP_RIDGES), group="Advanced",
        choice_labels={"trace": "Trace (published)", "fixed": "Fixed (λ·m)"},
        help="KIP mode: the ridge added to K_SS. Trace: λ·tr(K_SS)/m, as in published KIP (λ is its "
             "'reg'). Fixed: λ·m, the mean-form λ of the model the app certifies.")

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
            spec.check(name, getattr(self, name))      # every field's type and range, in declaration order
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
        """The settings in a JSON file (:meth:`save`, the app's *Save settings as…*), or in an export's
        manifest.json: the settings of the run it holds (read by :func:`engine.export.read_manifest`)."""
        where = printable(os.fspath(path))
        if os.path.basename(path) == MANIFEST and is_export(Path(path).parent):
            from engine.data.report import DatasetError
            from engine.export import read_manifest         # (imports torch: only for a manifest)
            try:
                return read_manifest(path)[2]
            except DatasetError as exc:
                raise ConfigError("config", str(exc)) from exc
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


def check_settings_target(path: str | Path) -> None:
    """Refuse to write settings over an existing file that is not a settings file (a JSON object whose
    keys are all settings, what :meth:`DistillConfig.save` writes; an export's manifest.json or a
    dataset is not one): it would be destroyed. ``--save-config`` and *Save settings as…*."""
    if not os.path.exists(path):
        return
    try:
        with open(path, encoding="utf-8") as f:
            data = json.loads(f.read(MAX_CONFIG_BYTES + 1))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        data = None
    if not (isinstance(data, dict) and set(data) <= {f.name for f in dataclasses.fields(DistillConfig)}):
        raise ConfigError("save_config", f"{printable(os.fspath(path))} exists and is not a settings file, so it is "
                          "not replaced — choose a new file name such as run.json")


def _declarations(cls: type = DistillConfig) -> dict[str, Setting]:
    """Each field's :class:`Setting` (its name filled in), in declaration order; a field declared without
    one is a programming error, refused when this module is imported."""
    settings = {}
    for f in dataclasses.fields(cls):
        setting = f.metadata.get("setting")
        if not isinstance(setting, Setting):
            raise TypeError(f"{cls.__name__}.{f.name} has no Setting declaration; declare it with "
                            f"_setting(default, label=..., help=..., spec=...) so that validation, the form "
                            f"and the CLI know it")
        if setting.group is not None and setting.group not in GROUPS:
            raise TypeError(f"{cls.__name__}.{f.name}: group {setting.group!r} is not one of {', '.join(GROUPS)}")
        if setting.spec is None and setting.kind_ not in ("names", "params", "version"):
            raise TypeError(f"{cls.__name__}.{f.name}: give it a spec (type and range) or a kind_ with its own rule")
        settings[f.name] = dataclasses.replace(setting, name=f.name)
    return settings


SETTINGS: dict[str, Setting] = _declarations()


def field_label(name: str) -> str:
    """The label (as the app's form shows it) of the setting ``name``, a :class:`ConfigError`'s field:
    "λ (ridge)" for ``lam``, "kernel depth" for ``kernel_params.depth``; the name itself otherwise."""
    if name.startswith("kernel_params."):
        return f"kernel {name.split('.', 1)[1]}"
    setting = SETTINGS.get(name)
    return setting.label if setting is not None else name
# name → type and range of every field with a spec (the sweep's grid keys); classes, kernel_params and
# schema_version have their own rules in DistillConfig.validate
_FIELDS: dict[str, _Spec] = {name: s.spec for name, s in SETTINGS.items() if s.spec is not None}
