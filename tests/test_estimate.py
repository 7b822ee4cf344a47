"""The run estimate (engine.plan): memory against what a real run allocates, refusal exactly where
the engine refuses (the peak over all stages against the budget and the machine's available memory;
run() refuses before any kernel is built), the CLI's refusal, and O(n·p) for explicit features.

Synthetic datasets are built in memory (uint8 8×8 images, 10 classes) so sizes are exact; reports
without pixels stand in where only counts matter.
"""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import engine.plan
from engine import ResourceError
from engine.cli import main
from engine.config import DistillConfig
from engine.data import Dataset, DatasetReport, load_dataset
from engine.distill import prepare_dataset, run
from engine.plan import RunEstimate, check_run, estimate_run, feature_dim, format_seconds
from engine.events import TeacherDone
from engine.kernels import make_kernel
from engine.kernels.base import Kernel
from engine.operators import build_operator, operator_plan

REPO = Path(__file__).resolve().parents[1]
GiB = 2**30


def estimate_memory(config, report, **kw):
    """The estimate without its time hint (which runs real steps): these tests are about memory."""
    return estimate_run(config, report, with_time=False, **kw)

# MNIST's per-class counts (train 60,000, test 10,000), for estimates without the dataset itself
MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture
def plenty(monkeypatch):
    """A machine with 64 GiB available in every pool, so that only the budget limits (the tests do not
    depend on how much memory the test machine has free)."""
    monkeypatch.setattr(engine.plan, "available_bytes", lambda pool, device=None: 64 * GiB)


@pytest.fixture
def no_kernel_built(monkeypatch):
    """Any kernel evaluation or kernel operator built after this fails the test."""
    import engine.teacher

    def never(*args, **kwargs):
        raise AssertionError("a kernel was evaluated for a run that does not fit")
    monkeypatch.setattr(engine.teacher, "build_operator_iter", never)
    monkeypatch.setattr(Kernel, "__call__", never)
    monkeypatch.setattr(Kernel, "features", never)


def synthetic(per_class: int, test_per_class: int = 5, shape=(8, 8, 1), k: int = 10) -> Dataset:
    """Random uint8 images, ``per_class`` train and ``test_per_class`` test images for each of k classes."""
    rng = np.random.default_rng(0)
    y, yt = np.repeat(np.arange(k), per_class), np.repeat(np.arange(k), test_per_class)
    x = rng.integers(0, 256, (len(y),) + shape, dtype=np.uint8)
    xt = rng.integers(0, 256, (len(yt),) + shape, dtype=np.uint8)
    classes = [str(i) for i in range(k)]
    return Dataset(x, y.astype(np.int64), xt, yt.astype(np.int64), classes,
                   report(classes, [per_class] * k, [test_per_class] * k, shape), "synthetic")


def report(classes, train, test, shape=(8, 8, 1)) -> DatasetReport:
    return DatasetReport.build(source="synthetic", format="npz", classes=list(classes), train_counts=train,
                               test_counts=test, image_shape=shape, modes={"L": sum(train) + sum(test)},
                               test_source="given", problems=[])


def counts_report(n: int, k: int = 10, shape=(8, 8, 1)) -> DatasetReport:
    """A report of n training images over k classes (as equal as possible) and 10 test images per class."""
    train = [n // k + (1 if i < n % k else 0) for i in range(k)]
    return report([str(i) for i in range(k)], train, [10] * k, shape)


def mnist_report() -> DatasetReport:
    """MNIST's report (counts and shape only: the dataset itself may be absent)."""
    return report([str(i) for i in range(10)], MNIST_TRAIN, MNIST_TEST, (28, 28, 1))


def named_changes(message: str) -> list[dict]:
    """The config changes a refusal message names (max_per_class, ipc, both together, rf kernels)."""
    changes = [dict(max_per_class=int(c)) for c in re.findall(r"lower max_per_class to (\d+)", message, re.I)]
    changes += [dict(ipc=int(i)) for i in re.findall(r"lower ipc to (\d+)", message, re.I)]
    changes += [dict(ipc=int(i), max_per_class=int(c))
                for i, c in re.findall(r"ipc (\d+) with max_per_class (\d+)", message)]
    if re.search(r"set teacher to auto \(a Nyström teacher", message):
        changes.append(dict(teacher="auto"))
    for name in ("rf-fc", "rf-conv"):
        found = re.search(rf"use {name} \(explicit features, [\d,]+ per image(?:: about [^)]*\)|\) with "
                          rf"max_per_class (\d+))", message, re.I)
        if found:
            changes.append(dict(kernel=name, kernel_params={},
                                **({"max_per_class": int(found.group(1))} if found.group(1) else {})))
    return changes


# ------------------------------------------------------------------------------ (1) memory vs measured
_MEASURE = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    sys.path.insert(0, {tests!r})
    from test_estimate import synthetic
    from engine.config import DistillConfig
    from engine.distill import run

    def status(field):   # kB; VmHWM is this process's peak (ru_maxrss would carry the parent's across fork)
        with open("/proc/self/status") as f:
            return 1024 * int(next(line for line in f if line.startswith(field)).split()[1])

    cfg = DistillConfig.from_json({config!r})
    ds = synthetic({per_class}, {test_per_class})
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])       # torch's lazy imports happen first
    before = status("VmRSS:")                                    # resident now (not the import peak)
    for event in run(cfg, dataset=ds):
        pass
    print(json.dumps({{"peak_bytes": status("VmHWM:") - before}}))
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc peak-RSS figures")
@pytest.mark.parametrize("name,config,per_class,test_per_class", [
    # dense teacher: n = 3,000, K is 69 MiB, built in 3 row tiles (the peak of the run)
    ("dense-teacher", dict(kernel="ntk-fc", loss="squared", teacher_tol=1e-4, steps=1, eval_every=0), 300, 20),
    # conv kernel: the step's autograd graph over 50 × 60 pairs of per-pixel covariances is the peak
    ("conv-step", dict(kernel="nngp-conv", loss="squared", ipc=5, steps=1, eval_every=0), 6, 5),
])
def test_memory_estimate_is_within_2x_of_the_measured_peak(name, config, per_class, test_per_class, record_property):
    """The peak resident memory a real run adds in a fresh process (VmHWM at the end minus the resident
    memory just before the run, after imports) against ``memory_bytes``: the run's own allocations, as
    the estimate counts them. glibc makes the measured peak vary from run to run (± 30 % seen here)."""
    cfg = DistillConfig(device="cpu", **config)
    estimate = estimate_memory(cfg, synthetic(per_class, test_per_class).report)
    script = _MEASURE.format(tests=str(REPO / "tests"), config=cfg.to_json(), per_class=per_class,
                             test_per_class=test_per_class)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                         timeout=300, check=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]
    ratio = estimate.memory_bytes / measured
    record_property(f"{name}_estimate_MiB", round(estimate.memory_bytes / 2**20, 1))
    record_property(f"{name}_measured_MiB", round(measured / 2**20, 1))
    print(f"{name}: estimate {estimate.memory_bytes / 2**20:.1f} MiB at the {estimate.peak_stage} stage, "
          f"measured {measured / 2**20:.1f} MiB, ratio {ratio:.2f}")
    assert 0.5 <= ratio <= 2.0, (name, estimate.memory_bytes, measured, estimate.parts)


def test_operator_bytes_are_the_tensors_build_operator_makes():
    """The operator size in the estimate is exactly the tensor build_operator returns (dense and features)."""
    x = torch.randn(600, 1, 8, 8, dtype=torch.float64)
    for name, storage in (("ntk-fc", "dense"), ("rf-conv", "features"), ("linear", "features")):
        estimate = estimate_memory(DistillConfig(kernel=name, device="cpu"), counts_report(600))
        op = build_operator(make_kernel(name), x, 2**40)
        assert estimate.storage == storage and estimate.operator_bytes == op.nbytes, name


# ------------------------------------------- (2) fits ⇔ the peak fits; the run refuses exactly then
def _refused(kernel: str, n: int, budget: int) -> bool:
    x = torch.randn(n, 1, 8, 8, dtype=torch.float64)
    try:
        build_operator(make_kernel(kernel).with_data_defaults(x), x, budget)
    except ResourceError:
        return True
    return False


@pytest.mark.parametrize("kernel,n", [("ntk-fc", 300), ("rbf", 257), ("rf-fc", 2000)])
def test_fits_is_the_peak_within_the_budget_and_never_what_build_operator_refuses(kernel, n, plenty):
    """``fits`` ⇔ the modelled peak over all stages ≤ the budget (to the byte); a budget at which
    build_operator refuses (dense n²·8 over it; rf-fc with p = 2,049 ≥ n = 2,000 is dense) never fits."""
    peak = estimate_memory(DistillConfig(teacher="exact", kernel=kernel, memory_budget_gb=1000.0, device="cpu"),
                        counts_report(n)).memory_bytes
    assert peak > n * n * 8
    for budget in (n * n * 8 - 1, n * n * 8, peak - 1, peak, peak + 1):
        cfg = DistillConfig(teacher="exact", kernel=kernel, memory_budget_gb=budget / GiB, device="cpu")
        assert int(cfg.memory_budget_gb * GiB) == budget
        estimate = estimate_memory(cfg, counts_report(n))
        assert estimate.n_train == n and estimate.memory_bytes == peak
        assert estimate.fits == (budget >= peak), (kernel, n, budget, estimate.message)
        if _refused(kernel, n, budget):
            assert not estimate.fits


def test_explicit_feature_storage_over_the_budget_is_refused(plenty, no_kernel_built):
    """rf-fc with p = 2,049 < n = 2,100 stores Φ (n × p, 34 MB): build_operator never refuses it, but
    under a 20 MiB budget the run does, before any feature is computed, with the estimate's message."""
    ds = synthetic(210, 3)
    cfg = DistillConfig(teacher="exact", kernel="rf-fc", memory_budget_gb=20 / 1024, steps=1, device="cpu")
    estimate = estimate_memory(cfg, ds.report)
    assert estimate.storage == "features" and estimate.operator_bytes == 2100 * 2049 * 8 > 20 * 2**20
    assert not estimate.fits and estimate.seconds_hint is None
    assert "Will not fit" in estimate.message and "2,100 × 2,049 features" in estimate.message
    assert "Peak of each stage" in estimate.message
    with pytest.raises(ResourceError) as refused:
        for _ in run(cfg, dataset=ds):
            pass
    assert str(refused.value) == estimate.message
    budget = float(re.search(r"raise memory_budget_gb to at least (\d+(?:\.\d+)?)", estimate.message).group(1))
    assert estimate_memory(cfg.replace(memory_budget_gb=budget), ds.report).fits
    assert named_changes(estimate.message), estimate.message
    for change in named_changes(estimate.message):
        assert estimate_memory(cfg.replace(**change), ds.report).fits, change


def test_conv_step_over_the_budget_is_refused_before_any_kernel(plenty, no_kernel_built):
    """A conv kernel whose teacher (n²·8) fits but whose distillation step (per-pixel covariances of
    m × n pairs kept for backward) does not: run() raises ResourceError with the estimate's message
    before any kernel is evaluated, and every max_per_class / ipc the message names fits."""
    ds = synthetic(30, 3)
    cfg = DistillConfig(teacher="exact", kernel="ntk-conv", ipc=10, steps=1, device="cpu")
    stages = dict(estimate_memory(cfg.replace(memory_budget_gb=1000.0), ds.report).stages)
    step = stages.pop("distillation step")
    assert step > 2 * max(stages.values())          # 40,000 pairs of 8×8 per-pixel maps: ~0.8 GB
    budget = (step + max(stages.values())) // 2
    cfg = cfg.replace(memory_budget_gb=budget / GiB)
    estimate = estimate_memory(cfg, ds.report)
    assert operator_plan(300, explicit=False, p=None, element_size=8, budget_bytes=budget) == (
        "dense", 300 * 300 * 8)                     # the teacher's own rule (build_operator's) lets it run
    assert not estimate.fits and estimate.peak_stage == "distillation step"
    assert "step autograd graph" in estimate.message
    with pytest.raises(ResourceError) as refused:
        for _ in run(cfg, dataset=ds):
            pass
    assert str(refused.value) == estimate.message
    changes = named_changes(estimate.message)
    assert any("ipc" in c or "max_per_class" in c for c in changes), estimate.message
    for change in changes:
        assert estimate_memory(cfg.replace(**change), ds.report).fits, change


def test_full_mnist_conv_is_refused_with_alternatives_that_fit(plenty):
    """Full MNIST, ntk-conv, 500 per class: ~12 GiB per step at IPC 1, ~110 GiB at IPC 10 — refused
    under the default 4 GiB, naming changes that fit (estimate only: no MNIST needed)."""
    for ipc, low, high in ((1, 8, 16), (10, 80, 160)):
        cfg = DistillConfig(teacher="exact", kernel="ntk-conv", max_per_class=500, ipc=ipc, device="cpu")
        estimate = estimate_memory(cfg, mnist_report())
        assert not estimate.fits and estimate.peak_stage == "distillation step"
        assert low * GiB < estimate.memory_bytes < high * GiB
        assert "rf-fc" in estimate.message
        changes = named_changes(estimate.message)
        assert any(c.get("kernel") is None for c in changes), estimate.message
        for change in changes:
            assert estimate_memory(cfg.replace(**change), mnist_report()).fits, change


@pytest.mark.parametrize("name,changes", [
    ("sample", dict()),
    ("MNIST 3 vs 5 (n = 11,552)", dict(classes=["3", "5"], ipc=10)),
    ("MNIST 10 classes, 1,200 per class", dict(max_per_class=1200, ipc=10)),
])
def test_ordinary_runs_fit_the_default_budget(name, changes, plenty, record_property):
    """Dense ntk-fc at the default 4 GiB: the sample digits, an MNIST class pair and 10-class MNIST
    capped at 1,200 per class. The dense teacher's peak is modelled 1.0–1.5× the measured one
    (``test_memory_estimate_is_within_2x_of_the_measured_peak``), so these are not refused for margin."""
    cfg = DistillConfig(device="cpu", **changes)
    assert cfg.memory_budget_gb == 4.0 and cfg.kernel == "ntk-fc"
    estimate = estimate_memory(cfg, load_dataset("sample").report if name == "sample" else mnist_report())
    record_property("peak_GiB", round(estimate.memory_bytes / GiB, 3))
    assert estimate.fits and "Fits the memory budget of 4.0 GiB" in estimate.message, estimate.message
    assert estimate.memory_bytes <= 4 * GiB == estimate.budget_bytes
    if name.startswith("MNIST 3"):
        assert estimate.n_train == 11_552
    if name.startswith("MNIST 10"):
        assert estimate.n_train == 12_000


def test_machine_memory_limits_below_the_budget(monkeypatch):
    """Where the machine has less available than the budget, that is the limit: the run is refused,
    the message says so, and does not offer a bigger budget alone."""
    ds = load_dataset("sample")
    cfg = DistillConfig(device="cpu", steps=1)
    needed = estimate_memory(cfg.replace(memory_budget_gb=1000.0), ds.report).memory_bytes
    monkeypatch.setattr(engine.plan, "available_bytes", lambda pool, device=None: needed // 2)
    estimate = estimate_memory(cfg, ds.report)
    assert not estimate.fits and estimate.limit_bytes == needed // 2
    assert "this machine has available now" in estimate.message
    assert "raising memory_budget_gb alone does not help" in estimate.message
    with pytest.raises(ResourceError, match="available now"):
        check_run(cfg, ds.report)
    assert named_changes(estimate.message), estimate.message
    for change in named_changes(estimate.message):
        assert estimate_memory(cfg.replace(**change), ds.report).fits, change
    monkeypatch.setattr(engine.plan, "available_bytes", lambda pool, device=None: needed)
    assert estimate_memory(cfg, ds.report).fits and check_run(cfg, ds.report).fits


@pytest.mark.parametrize("budget_factor", [1.0, 0.999])
def test_run_refuses_exactly_when_the_estimate_says(budget_factor, plenty):
    """Through the real run (class selection and cap applied by the run itself), at a budget of the
    estimated peak and just under it."""
    ds = synthetic(40, 3)
    cfg = DistillConfig(teacher="exact", kernel="ntk-fc", classes=["1", "2", "3", "4", "5", "6"], max_per_class=25, steps=1,
                        device="cpu")
    peak = estimate_memory(cfg, ds.report).memory_bytes
    cfg = cfg.replace(memory_budget_gb=int(budget_factor * peak) / GiB)
    estimate = estimate_memory(cfg, ds.report)
    assert estimate.n_train == 6 * 25
    try:
        for event in run(cfg, dataset=ds):
            if isinstance(event, TeacherDone):
                break
        refused = False
    except ResourceError as exc:
        assert str(exc) == estimate.message
        refused = True
    assert estimate.fits == (not refused) == (budget_factor == 1.0)


@pytest.mark.parametrize("changes", [dict(), dict(max_per_class=7), dict(classes=["2", "0"]),
                                     dict(classes=["1", "3", "5"], max_per_class=13)])
def test_training_size_is_the_runs(changes):
    ds = synthetic(20, 2)
    ds = ds._with(ds.x_train[5:], ds.y_train[5:], ds.x_test, ds.y_test, ds.classes)   # unequal classes
    cfg = DistillConfig(device="cpu", **changes)
    assert estimate_memory(cfg, ds.report).n_train == len(prepare_dataset(cfg, ds).y_train)
    assert estimate_memory(cfg, ds.describe()).n_train == len(prepare_dataset(cfg, ds).y_train)


def test_refusal_message_names_numbers_that_work(plenty):
    """The suggested cap is the largest that fits and the suggested budget fits."""
    ds = load_dataset("sample")
    cfg = DistillConfig(teacher="exact", memory_budget_gb=0.001, device="cpu")
    estimate = estimate_memory(cfg, ds.report)
    assert not estimate.fits and estimate.seconds_hint is None
    message = estimate.message
    assert "Will not fit" in message and "Peak of each stage: data" in message
    cap = int(re.search(r"lower max_per_class to (\d+)", message, re.I).group(1))
    budget = float(re.search(r"raise memory_budget_gb to at least (\d+(?:\.\d+)?)", message).group(1))
    assert estimate_memory(cfg.replace(max_per_class=cap), ds.report).fits
    assert not estimate_memory(cfg.replace(max_per_class=cap + 1), ds.report).fits
    assert estimate_memory(cfg.replace(memory_budget_gb=budget), ds.report).fits
    n_max = int(re.search(r"at most ([\d,]+) training images fit", message).group(1).replace(",", ""))
    assert n_max ** 2 * 8 <= 0.001 * 2**30 < (n_max + 1) ** 2 * 8


# ------------------------------------------------------------------------------------------ (3) CLI
def test_cli_refuses_before_any_kernel_is_built(tmp_path, capsys, monkeypatch):
    import engine.teacher

    def never(*args, **kwargs):
        raise AssertionError("the kernel operator was built for a run that does not fit")
    monkeypatch.setattr(engine.teacher, "build_operator_iter", never)
    out = tmp_path / "o"
    rc = main(["distill", "--data", "sample", "--out", str(out), "--steps", "1", "--memory-budget-gb", "0.001"])
    captured = capsys.readouterr()
    assert rc == 2 and not out.exists() and captured.out == ""
    assert "estimate: peak memory" in captured.err
    assert "Will not fit" in captured.err and "memory budget" in captured.err
    assert "max_per_class to" in captured.err and "raise memory_budget_gb to at least" in captured.err
    assert "Traceback" not in captured.err


def test_cli_prints_the_estimate_before_the_run(tmp_path, capsys):
    rc = main(["distill", "--data", "sample", "--out", str(tmp_path / "o"), "--steps", "1", "--max-per-class", "10",
               "--eval-every", "0"])
    err = capsys.readouterr().err
    assert rc == 0
    line = next(line for line in err.splitlines() if line.startswith("estimate:"))   # (progress goes elsewhere)
    assert "100 × 100 dense" in line and "Fits the memory budget" in line


# ------------------------------------------------------------------------- (4) explicit features: n·p
@pytest.mark.parametrize("name,params,shape", [
    ("linear", {}, (8, 8, 1)), ("linear", {"bias": 0.5}, (8, 8, 1)), ("rf-fc", {}, (8, 8, 1)),
    ("rf-fc", {"depth": 2, "width": 32, "n_models": 3}, (6, 5, 3)), ("rf-conv", {}, (8, 8, 1)),
    ("rf-conv", {"depth": 2, "width": 8}, (16, 12, 3)), ("rf-conv", {"width": 4, "n_models": 2}, (28, 28, 1)),
])
def test_feature_dimension_is_the_kernels(name, params, shape):
    kernel = make_kernel(name, **params)
    h, w, c = shape
    with torch.no_grad():
        p = kernel.features(torch.zeros(1, c, h, w, dtype=torch.float64)).shape[1]
    assert feature_dim(kernel, (c, h, w)) == p


def test_explicit_features_scale_with_n_times_p_not_n_squared():
    big = dict(memory_budget_gb=10_000.0, device="cpu", steps=1)
    rf = [estimate_memory(DistillConfig(kernel="rf-fc", **big), counts_report(n)) for n in (40_000, 80_000)]
    dense = [estimate_memory(DistillConfig(kernel="ntk-fc", **big), counts_report(n)) for n in (40_000, 80_000)]
    p = 4 * 512 + 1
    assert [e.storage for e in rf] == ["features", "features"]
    assert [e.operator_bytes for e in rf] == [40_000 * p * 8, 80_000 * p * 8]
    assert 1.8 < rf[1].memory_bytes / rf[0].memory_bytes < 2.2            # O(n·p)
    assert 3.6 < dense[1].memory_bytes / dense[0].memory_bytes < 4.4      # O(n²)
    assert rf[1].memory_bytes < dense[1].memory_bytes / 10          # 4.3 against 52.5 GB at n = 80,000


# ------------------------------------------------------------------------------------------ the rest
def test_estimate_contract_and_time_hint(plenty):
    estimate = estimate_run(DistillConfig(device="cpu", steps=20), load_dataset("sample").report)
    assert isinstance(estimate, RunEstimate) and estimate.fits
    with pytest.raises(dataclasses.FrozenInstanceError):
        estimate.fits = False                                            # frozen
    assert estimate.memory_bytes > estimate.operator_bytes == 1438 ** 2 * 8
    assert estimate.seconds_hint is not None and estimate.seconds_hint > 0
    assert float(f"{estimate.seconds_hint:.2g}") == estimate.seconds_hint   # two significant figures
    assert "Fits the memory budget" in estimate.message
    assert [format_seconds(s) for s in (0.3, 40, 300, 20_000)] == [
        "under a second", "about 40 s", "about 5 min", "about 6 h"]


def test_conv_step_graph_is_counted(plenty):
    """The conv kernels' per-pixel covariances under autograd: m × n pairs × H·W·(12 + 17·depth) arrays."""
    kernel = make_kernel("nngp-conv")
    cfg = DistillConfig(teacher="exact", kernel="nngp-conv", loss="squared", ipc=2, device="cpu", dtype="float32")
    estimate = estimate_memory(cfg, counts_report(2000, shape=(32, 32, 3)))
    parts = dict(estimate.parts)
    m, n = 20, 2000
    per_pair = 32 * 32 * 4 * (12 + 17 * kernel.depth)
    assert estimate.peak_stage == "distillation step"
    assert parts["step autograd graph"] >= per_pair * (m * n + m * m)
    assert not estimate.fits and "over the memory budget" in estimate.message
    cap = int(re.search(r"lower max_per_class to (\d+)", estimate.message, re.I).group(1))
    capped = estimate_memory(cfg.replace(max_per_class=cap), counts_report(2000, shape=(32, 32, 3)))
    assert capped.fits and capped.memory_bytes <= 4 * 2**30


# ------------------------------------------------------------------ the teacher plan (exact or Nyström)
WHOLE = {"mnist": ((28, 28, 1), 6000, 1000), "fashion-mnist": ((28, 28, 1), 6000, 1000),
         "cifar-10": ((32, 32, 3), 5000, 1000)}


def _whole(name):
    shape, train, test = WHOLE[name]
    return {"classes": [str(i) for i in range(10)], "train_counts": [train] * 10, "test_counts": [test] * 10,
            "image_shape": shape}


@pytest.mark.parametrize("dataset", list(WHOLE))
@pytest.mark.parametrize("kernel", ["ntk-fc", "nngp-fc", "nngp-conv", "ntk-conv", "rbf", "rf-fc", "rf-conv"])
def test_whole_datasets_are_never_refused_with_default_settings(dataset, kernel):
    from engine.plan.memory import Nystrom as _Nystrom, count_sizes as _sizes, make_run as _make_run, nystrom_answer as _nystrom_answer
    cfg = DistillConfig(data="x", kernel=kernel, device="cpu")
    report = _whole(dataset)
    est = estimate_memory(cfg, report)
    assert est.fits, est.message
    assert est.memory_bytes <= cfg.memory_budget_gb * 2**30
    if est.teacher == "nystrom":
        # the most centres that fit: one more would not
        h, w, c = report["image_shape"]
        run_model = _make_run(cfg, (c, h, w), torch.device("cpu"))
        s = _sizes(cfg, report, None)
        more = _nystrom_answer(run_model, s, _Nystrom(est.centres + 1))
        assert more.peak.total > cfg.memory_budget_gb * 2**30
        assert "Nyström" in est.teacher_reason and f"{est.centres:,}" in est.teacher_reason
    else:
        assert kernel in ("rf-fc", "rf-conv")      # explicit features of all n images fit as they are


def test_auto_teacher_is_exact_when_it_fits_and_exact_is_refused_with_the_nystrom_alternative():
    small = estimate_memory(DistillConfig(data="x", device="cpu", max_per_class=200), _whole("mnist"))
    assert small.fits and small.teacher == "exact" and small.centres is None
    forced = estimate_memory(DistillConfig(data="x", device="cpu", teacher="exact"), _whole("mnist"))
    assert not forced.fits and "set teacher to auto (a Nyström teacher with" in forced.message
    chosen = estimate_memory(DistillConfig(data="x", device="cpu", teacher="nystrom", centres=1234), _whole("mnist"))
    assert chosen.fits and chosen.teacher == "nystrom" and chosen.centres == 1234
    assert chosen.operator_bytes == 60_000 * 1234 * 8
    # centres whose K(X, Z) cannot be cached within the budget are recomputed per pass, not refused
    tight = estimate_memory(DistillConfig(data="x", device="cpu", teacher="nystrom", centres=6000), _whole("mnist"))
    assert tight.fits and not tight.nystrom_cache and tight.operator_bytes == 0
    assert "recomputed" in tight.summary()
    # more centres than training images: all of them, and the reason says so
    few = {**_whole("mnist"), "train_counts": [40] * 10}
    capped = estimate_memory(DistillConfig(data="x", device="cpu", teacher="nystrom", centres=5000), few)
    assert capped.centres == 400 and "5,000 asked for, at most the 400 training images" in capped.teacher_reason


@pytest.mark.parametrize("cfg,rep", [
    (DistillConfig(teacher="exact", kernel="ntk-conv", max_per_class=500, ipc=10, device="cpu"), "mnist"),
    (DistillConfig(teacher="exact", kernel="ntk-fc", ipc=10, device="cpu"), "mnist"),
    (DistillConfig(teacher="exact", kernel="rf-fc", memory_budget_gb=20 / 1024, steps=1, device="cpu"), "synthetic"),
])
def test_refusal_changes_are_the_named_alternatives_and_each_fits(cfg, rep, plenty):
    """``RunEstimate.changes`` (the GUI's one-click alternatives) are changes the message names (one per
    alternative: the first of an "ipc with max_per_class" list), plus the budget, each with a short
    label, and applying any one of them gives a run that fits."""
    report_ = mnist_report() if rep == "mnist" else synthetic(210, 3).report
    estimate = estimate_memory(cfg, report_)
    assert not estimate.fits and estimate.changes
    fields = [change for _, change in estimate.changes]
    named = named_changes(estimate.message)
    offered = [c for c in fields if set(c) != {"memory_budget_gb"}]
    assert offered and all(c in named for c in offered), (offered, named)
    assert {c.get("kernel") for c in offered} == {c.get("kernel") for c in named}
    for label, change in estimate.changes:
        assert label and label[0].isupper() and len(label) < 50, label
        assert estimate_memory(cfg.replace(**change), report_).fits, change


def test_time_hint_measures_the_step_and_is_kept_per_setting(plenty, monkeypatch):
    """The time hint's steps and certificates come from a real run of the configured step
    (engine.plan.time), measured once per setting that changes a step's work: λ, the step count
    and the learning rate reuse the measurement; IPC does not. A cancelled probe raises Cancelled."""
    import engine.plan.time as step_timing
    from engine.control import Cancelled
    monkeypatch.setattr(step_timing, "_MEASURED", {})
    calls = []
    real = step_timing._measure
    monkeypatch.setattr(step_timing, "_measure", lambda *a: calls.append(a) or real(*a))
    # a probe of every training and test row: no modelled cost of rows beyond the probe's is added
    # (with the default cap, that model's share of the hint moves with the machine's measured rates)
    monkeypatch.setattr(step_timing, "PROBE_SECONDS", 1e9)
    report = load_dataset("sample").report
    base = DistillConfig(device="cpu", steps=100)
    first = estimate_run(base, report)
    assert len(calls) == 1 and first.seconds_hint > 0
    timing = next(iter(step_timing._MEASURED.values()))
    assert 0 < timing.step_s < 1 and 0 < timing.certificate_s < 5
    assert 1438 <= timing.rows <= 1438 + 10                          # all rows, in whole classes
    assert timing.test_rows == min(sum(report.test_counts), step_timing.MAX_TEST) // 10 * 10
    longer = estimate_run(base.replace(steps=1000, lam=1e-2, lr=0.1), report)
    assert len(calls) == 1                                           # reused
    # 900 more steps and 18 more certificates (eval_every 50), each at its measured time; the hints
    # are rounded to two significant figures
    expected = 900 * timing.step_s + 18 * timing.certificate_s
    tolerance = 0.05 * (longer.seconds_hint + first.seconds_hint)
    assert abs((longer.seconds_hint - first.seconds_hint) - expected) <= tolerance, (first, longer, timing)
    estimate_run(base.replace(ipc=3), report)
    assert len(calls) == 2                                           # a different step: measured
    monkeypatch.setattr(step_timing, "STEP_SECONDS", 0.0)            # stop after MIN_STEPS …
    threading = __import__("threading")
    timer = threading.Timer(0.3, step_timing.cancel)                 # … or be cancelled mid-probe
    monkeypatch.setattr(step_timing, "STEPS", 10_000)
    monkeypatch.setattr(step_timing, "MIN_STEPS", 10_000)
    timer.start()
    with pytest.raises(Cancelled):
        estimate_run(base.replace(ipc=4), report)
    timer.join()
    assert len(step_timing._MEASURED) == 2                           # nothing kept from the cancelled probe
