"""The layering rule: ``engine/`` never imports Qt, pyqtgraph or the GUI package.

Two independent checks:

* dynamic: a fresh interpreter whose import system refuses PySide6, shiboken6, pyqtgraph and
  dgkip_gui (a ``sys.meta_path`` finder installed before anything else) imports ``engine`` and every
  one of its submodules, then runs a tiny distillation. The finder also records attempts, so an
  engine module that swallows the ImportError (``try: import PySide6 except ImportError``) still
  fails the test;
* static: no ``import``/``from ... import``/``importlib.import_module``/``__import__`` of those names
  anywhere in ``engine/``'s source, including inside functions.

The meta-tests at the end run the same harness and checker on throw-away packages that do import
Qt, so the checks are proven to bite.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "engine"
FORBIDDEN = ("PySide6", "shiboken6", "pyqtgraph", "dgkip_gui")

# Runs first in the child interpreter: refuse (and record) every import of a forbidden package.
_BLOCKER = """
import importlib.abc, sys, traceback

FORBIDDEN = {forbidden!r}
ATTEMPTS = []

class _RefuseGui(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in FORBIDDEN:
            stack = [f"{{f.filename}}:{{f.lineno}}" for f in traceback.extract_stack()[:-1]
                     if "importlib" not in f.filename and "<frozen" not in f.filename]
            ATTEMPTS.append((name, stack[-1] if stack else "?"))
            raise ImportError(f"layering violation: import of {{name!r}} (from {{ATTEMPTS[-1][1]}})")
        return None

preloaded = sorted(m for m in sys.modules if m.partition(".")[0] in FORBIDDEN)
assert not preloaded, f"already imported before the check: {{preloaded}}"
sys.meta_path.insert(0, _RefuseGui())
"""

# Imports the package and every submodule (``__main__`` modules run a CLI, so they are skipped).
_IMPORT_ALL = """
import importlib, pkgutil

package = importlib.import_module({package!r})
imported = [package.__name__]
def _fail(name):
    raise ImportError(f"cannot import {{name}}")
for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".", onerror=_fail):
    if info.name.rpartition(".")[2] == "__main__":
        continue
    importlib.import_module(info.name)
    imported.append(info.name)
"""

_REPORT = """
import json
leaked = sorted(m for m in sys.modules if m.partition(".")[0] in FORBIDDEN)
print("LAYERING-REPORT " + json.dumps({"imported": imported, "attempts": ATTEMPTS, "leaked": leaked}))
if ATTEMPTS or leaked:
    raise SystemExit(f"layering violation: attempts={ATTEMPTS} leaked={leaked}")
"""


def run_without_gui(package: str, sys_path: Path, body: str = "", timeout: float = 300
                    ) -> subprocess.CompletedProcess[str]:
    """Import ``package`` (found on ``sys_path``) and all its submodules in a fresh interpreter in
    which the GUI packages cannot be imported, then run ``body``; return the finished process."""
    script = "\n".join([
        _BLOCKER.format(forbidden=FORBIDDEN),
        f"sys.path.insert(0, {str(sys_path)!r})",
        _IMPORT_ALL.format(package=package),
        textwrap.dedent(body),
        _REPORT,
    ])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    return subprocess.run([sys.executable, "-I", "-c", script], cwd=sys_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def report(proc: subprocess.CompletedProcess[str]) -> dict:
    for line in proc.stdout.splitlines():
        if line.startswith("LAYERING-REPORT "):
            return json.loads(line.partition(" ")[2])
    return {}


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"


# ---------------------------------------------------------------------------------------- engine
_TINY_RUN = """
from engine.config import DistillConfig
from engine.distill import run
from engine.events import Done

events = list(run(DistillConfig(data="sample", steps=3, ipc=1, eval_every=0, snapshot_every=1)))
assert events, "run() yielded no events"
assert isinstance(events[-1], Done), f"last event is {type(events[-1]).__name__}, not Done"
assert events[-1].result is not None, f"Done without a result (reason={events[-1].reason!r})"
print("TINY-RUN-OK", len(events), events[-1].reason)
"""


def test_engine_imports_without_gui_packages():
    proc = run_without_gui("engine", REPO)
    assert proc.returncode == 0, explain(proc)
    imported = report(proc)["imported"]
    # Every file in a package folder is a module; engine/bench/peer/ holds scripts a separate Python
    # (with jax) runs, deliberately not a package, so they are checked only by the static test.
    expected = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                for p in ENGINE.rglob("*.py") if p.name != "__main__.py" and (p.parent / "__init__.py").exists()}
    assert expected <= set(imported), f"not imported: {sorted(expected - set(imported))}"


def test_engine_distils_without_gui_packages():
    if not (ENGINE / "distill.py").exists() and not (ENGINE / "distill").is_dir():
        pytest.skip("engine.distill is not written yet")
    proc = run_without_gui("engine", REPO, _TINY_RUN)
    assert proc.returncode == 0, explain(proc)
    assert "TINY-RUN-OK" in proc.stdout, explain(proc)


def forbidden_imports(source: str, filename: str = "<source>") -> list[str]:
    """Every static import of a forbidden package in ``source``, as ``"file:line name"``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        found += [f"{filename}:{node.lineno} {name}" for name in names
                  if name.partition(".")[0] in FORBIDDEN]
    return found


def test_engine_source_has_no_gui_imports():
    files = sorted(ENGINE.rglob("*.py"))
    assert files, "engine/ has no Python files"
    violations = [v for path in files
                  for v in forbidden_imports(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))]
    assert not violations, "engine/ must not import the GUI stack:\n" + "\n".join(violations)


# ------------------------------------------------------------- meta-tests: the checks do bite
def _make_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def test_harness_passes_a_clean_package(tmp_path):
    _make_package(tmp_path, {"cleanpkg/__init__.py": "import json\n",
                             "cleanpkg/sub/__init__.py": "",
                             "cleanpkg/sub/mod.py": "VALUE = 1\n"})
    proc = run_without_gui("cleanpkg", tmp_path, "import cleanpkg.sub.mod as m; assert m.VALUE == 1")
    assert proc.returncode == 0, explain(proc)
    assert set(report(proc)["imported"]) == {"cleanpkg", "cleanpkg.sub", "cleanpkg.sub.mod"}


@pytest.mark.parametrize("statement", [
    "import PySide6",
    "from PySide6.QtCore import QObject",
    "import shiboken6",
    "import pyqtgraph as pg",
    "import dgkip_gui.app",
])
def test_harness_fails_a_package_importing_the_gui_stack(tmp_path, statement):
    # The import sits in a nested submodule, so only the full walk can find it.
    _make_package(tmp_path, {"leaky/__init__.py": "",
                             "leaky/deep/__init__.py": "",
                             "leaky/deep/plot.py": f"{statement}\n"})
    proc = run_without_gui("leaky", tmp_path)
    assert proc.returncode != 0, explain(proc)
    assert "layering violation" in proc.stderr, explain(proc)


def test_harness_fails_a_package_that_swallows_the_import_error(tmp_path):
    _make_package(tmp_path, {"sneaky/__init__.py": """
        try:
            import PySide6
        except ImportError:
            PySide6 = None
        """})
    proc = run_without_gui("sneaky", tmp_path)
    assert proc.returncode != 0, explain(proc)
    assert report(proc)["attempts"][0][0] == "PySide6", explain(proc)


def test_static_check_finds_every_import_form():
    source = """
        import os
        import PySide6.QtWidgets
        from pyqtgraph import PlotWidget
        import importlib
        def lazy():
            import shiboken6
            importlib.import_module("dgkip_gui.app")
            return __import__("PySide6")
        from . import dgkip_gui   # relative: a sibling module, not the GUI package
    """
    found = [v.split(" ", 1)[1] for v in forbidden_imports(textwrap.dedent(source))]
    assert sorted(found) == sorted(["PySide6.QtWidgets", "pyqtgraph", "shiboken6", "dgkip_gui.app", "PySide6"])
