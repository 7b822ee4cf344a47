"""Shared test fixtures. Real datasets live in ``../shared/datasets`` beside the repository (or
``$DGKIP_DATASETS``); tests that need them skip cleanly when the folder is absent."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("DGKIP_DATASETS", REPO.parent / "shared" / "datasets"))

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def automatic_gc_outside_the_gui(request):
    """A main window moves cycle collection to its GUI thread (dgkip_gui.garbage), where only a running
    event loop collects; tests without a window get CPython's automatic collection back."""
    garbage = sys.modules.get("dgkip_gui.garbage")
    if garbage is not None and garbage.active() and request.node.get_closest_marker("gui") is None:
        garbage.collect_automatically()
    yield


@pytest.fixture
def datasets_dir() -> Path:
    """The shared real-dataset folder; skips the test when it is absent."""
    if not (DATASETS / "mnist-train.npz").exists():
        pytest.skip(f"real datasets not found at {DATASETS}")
    return DATASETS


@pytest.fixture(params=["atan2", "atan"])
def angle_method(request, monkeypatch) -> str:
    """Each of the ReLU angle's two formulas (engine.kernels.angle) in turn, whichever this machine's
    measurement would choose: a test that takes this fixture checks the FC kernels under both."""
    from engine.kernels import angle
    monkeypatch.setattr(angle, "method", lambda dtype, device="cpu": request.param)
    return request.param


@pytest.fixture(params=["sqrt", "rsqrt"])
def root_method(request, monkeypatch) -> str:
    """Each of the in-place kernel's two square roots (engine.kernels.fc.root_method) in turn."""
    from engine.kernels import fc
    monkeypatch.setattr(fc, "root_method", lambda dtype, device="cpu": request.param)
    return request.param


# Interpreter finalisation after the whole GUI + torch suite has been seen to abort in a C extension
# ("Fatal Python error: none_dealloc … Garbage-collecting", after pytest printed its summary), which
# would turn a green run into exit status 134. All results and reports (terminal summary, JUnit XML)
# are written by then, so end the process with pytest's own exit status instead of finalising.
_session = {}


def pytest_sessionfinish(session, exitstatus):
    _session["exitstatus"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if "exitstatus" in _session and os.environ.get("DGKIP_TEST_FINALIZE") != "1":
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_session["exitstatus"])
