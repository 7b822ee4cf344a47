"""Packaging: PyInstaller spec, launcher, scripts, Makefile, icons and the Linux desktop entry.

Everything here is fast except ``test_frozen_app_self_test`` (``@pytest.mark.slow``: a full
PyInstaller build, several minutes and gigabytes), which the default run and CI deselect;
run it with ``make test PYTEST_MARK=slow``.
"""
from __future__ import annotations

import ast
import configparser
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

REPO = Path(__file__).resolve().parents[1]
PACKAGING = REPO / "packaging"
SPEC = PACKAGING / "dgkip_studio.spec"
ICONS = REPO / "resources" / "icons"
DESKTOP = REPO / "resources" / "dgkip-studio.desktop"
ICON_NAME = "dgkip-studio"
SIZES = (16, 32, 48, 64, 128, 256, 512)
APP_NAME = "DGKIP Studio"
SCRIPTS = ("build.sh", "smoke.sh", "install_desktop_entry.sh")


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------ PyInstaller spec
def test_spec_compiles():
    compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec")


def evaluate_spec() -> dict[str, tuple[tuple, dict]]:
    """Execute the spec with PyInstaller's build classes stubbed out; return their arguments."""
    pytest.importorskip("PyInstaller", reason="PyInstaller (dev extra) not installed")
    calls: dict[str, tuple[tuple, dict]] = {}

    def recorder(kind: str):
        def record(*args, **kwargs):
            calls[kind] = (args, kwargs)
            return types.SimpleNamespace(pure=[], scripts=[], binaries=[], datas=[])
        return record

    namespace = {name: recorder(name) for name in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE")}
    namespace.update(SPECPATH=str(PACKAGING), __name__="__main__", __file__=str(SPEC))
    exec(compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec"), namespace)
    return calls


@pytest.fixture(scope="module")
def spec_calls():
    return evaluate_spec()


def test_spec_builds_a_windowed_one_folder_app(spec_calls):
    _, exe = spec_calls["EXE"]
    _, coll = spec_calls["COLLECT"]
    assert exe["name"] == APP_NAME and coll["name"] == APP_NAME
    assert exe["console"] is False
    assert exe["exclude_binaries"] is True          # one folder, not one file
    if sys.platform == "win32":
        assert exe["icon"].endswith(".ico") and Path(exe["icon"]).is_file()


def test_spec_inputs_exist_and_resources_are_bundled(spec_calls):
    (scripts,), analysis = spec_calls["Analysis"]
    assert [Path(s) for s in scripts] == [PACKAGING / "launcher.py"]
    for source, dest in analysis["datas"] + analysis["binaries"]:
        assert Path(source).exists(), f"spec collects a missing file: {source}"
    assert (str(REPO / "resources"), "resources") in analysis["datas"]


def test_spec_collects_torchvision_ops_and_keeps_gpu_libraries(spec_calls):
    _, analysis = spec_calls["Analysis"]
    names = [(Path(src).name, dest) for src, dest in analysis["binaries"]]
    # Without torchvision/_C*.so the frozen app fails: "operator torchvision::nms does not exist".
    assert any(n.startswith("_C") and d == "torchvision" for n, d in names), names
    if importlib.util.find_spec("nvidia") is not None:       # CUDA torch wheel on Linux
        cuda = {n for n, d in names if d.startswith("nvidia")}
        for lib in ("libcudart.so", "libcublas.so", "libcudnn.so", "libcudnn_ops.so", "libnvrtc-builtins.so"):
            assert any(n.startswith(lib) for n in cuda), f"{lib} is not collected"


def test_spec_excludes_other_qt_bindings_and_test_only_packages(spec_calls):
    _, analysis = spec_calls["Analysis"]
    for name in ("PyQt5", "PyQt6", "PySide2", "tkinter", "pytest"):
        assert name in analysis["excludes"]
    assert "PySide6" not in analysis["excludes"]


# Runs the GUI's self-test from source with the spec's excluded modules made absent, as they are
# in the frozen app: seconds here instead of a multi-minute build to find a needed exclusion.
# Every finder is wrapped so that it cannot see an excluded module: import raises
# ModuleNotFoundError, importlib.util.find_spec returns None and sys.modules has no entry for it
# (pyqtgraph picks its binding from sys.modules), as in the frozen app.
_WITHOUT_EXCLUDED = """
import runpy, sys
EXCLUDED = {excluded!r}

class _Blind:
    def __init__(self, finder):
        self._finder = finder
    def __getattr__(self, name):
        return getattr(self._finder, name)
    def find_spec(self, name, path=None, target=None):
        if any(name == e or name.startswith(e + ".") for e in EXCLUDED):
            return None
        find = getattr(self._finder, "find_spec", None)
        return find(name, path, target) if find else None

assert not [m for m in sys.modules if m in EXCLUDED]
sys.meta_path[:] = [_Blind(f) for f in sys.meta_path]
sys.argv = ["dgkip", "--self-test"]
runpy.run_module("dgkip_gui", run_name="__main__", alter_sys=True)
"""


def test_app_self_test_passes_without_the_excluded_modules(spec_calls, tmp_path):
    if importlib.util.find_spec("dgkip_gui.self_test") is None:
        pytest.skip("dgkip_gui has no self-test yet")
    _, analysis = spec_calls["Analysis"]
    script = _WITHOUT_EXCLUDED.format(excluded=tuple(analysis["excludes"]))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "CUDA_VISIBLE_DEVICES": "", "HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def test_launcher_calls_the_gui_entry_point_and_guards_stdio():
    tree = ast.parse((PACKAGING / "launcher.py").read_text(encoding="utf-8"))
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("dgkip_gui.app", "main") in imports
    assert "multiprocessing.freeze_support()" in ast.unparse(tree)


def test_launcher_replaces_missing_stdio(monkeypatch):
    """Windowed builds start with sys.stdout/sys.stderr = None; the launcher must fix that first."""
    spec = importlib.util.spec_from_file_location("launcher", PACKAGING / "launcher.py")
    launcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launcher)  # not __main__: defines the helpers, starts nothing
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)
    launcher._ensure_stdio()
    try:
        print("written to devnull", file=sys.stdout)
        sys.stderr.write("also fine\n")
    finally:
        sys.stdout.close()
        sys.stderr.close()
    # The GUI script of the installed package and the frozen app start the same function.
    assert pyproject()["project"]["gui-scripts"]["dgkip"] == "dgkip_gui.app:main"


# ------------------------------------------------------------------------------ scripts, Makefile
@pytest.mark.parametrize("script", [PACKAGING / s for s in SCRIPTS] + [REPO / ".ci" / "run"],
                         ids=lambda p: p.name)
def test_scripts_are_executable_bash(script):
    assert script.is_file()
    assert os.access(script, os.X_OK), f"{script} is not executable"
    assert script.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash")
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, flags=re.MULTILINE))


def test_makefile_has_the_documented_targets():
    assert {"run", "test", "frozen", "smoke", "desktop", "clean", "setup"} <= makefile_targets()


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
@pytest.mark.parametrize("target, expected", [
    ("test", [r"QT_QPA_PLATFORM=offscreen \S+python -m pytest"]),
    ("run", [r"-m dgkip_gui --sample", r"QT_QPA_PLATFORM=offscreen \S+ -m dgkip_gui --self-test",
             r"libxcb-icccm4 libxcb-image0 libxcb-keysyms1"]),
    ("frozen", [r"packaging/build\.sh"]),
    ("smoke", [r"packaging/smoke\.sh"]),
    ("desktop", [r"packaging/install_desktop_entry\.sh"]),
])
def test_make_dry_run_prints_the_expected_commands(target, expected, tmp_path):
    # A throw-away VENV shows the full setup too: torch pinned first, then the editable install.
    proc = subprocess.run(["make", "-n", "-C", str(REPO), target, f"VENV={tmp_path / 'venv'}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for pattern in expected:
        assert re.search(pattern, proc.stdout), f"{pattern!r} not in:\n{proc.stdout}"
    if target != "smoke":
        setup = proc.stdout.index("pip install torch==2.14.1 torchvision==0.29.1")
        assert setup < proc.stdout.index("pip install -e '.[dev]'")


# ------------------------------------------------------------------------------------------ icons
@pytest.mark.parametrize("size", SIZES)
def test_png_icons_exist_at_every_size_and_are_not_blank(size):
    path = ICONS / "hicolor" / f"{size}x{size}" / "apps" / f"{ICON_NAME}.png"
    with Image.open(path) as image:
        assert image.size == (size, size)
        rgba = image.convert("RGBA")
    alpha = rgba.getchannel("A")
    assert alpha.getpixel((0, 0)) == 0, "corners should be transparent (rounded tile)"
    assert alpha.getpixel((size // 2, size // 2)) == 255, "the tile should be opaque"
    colours = rgba.convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colours) >= min(8, size // 2), "icon looks blank"


def test_runtime_icon_files_exist():
    assert (ICONS / f"{ICON_NAME}.svg").is_file()
    with Image.open(ICONS / f"{ICON_NAME}.png") as image:
        assert image.size == (256, 256)


def test_svg_is_square_and_well_formed():
    root = ET.parse(ICONS / f"{ICON_NAME}.svg").getroot()
    assert root.tag.endswith("svg")
    _, _, width, height = map(float, root.get("viewBox").split())
    assert width == height


def test_pngs_are_rendered_from_the_current_svg(qapp):
    """Catch an edited SVG whose PNGs were not re-rendered (`make icons`)."""
    spec = importlib.util.spec_from_file_location("render_icons", PACKAGING / "render_icons.py")
    render_icons = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render_icons)
    from PySide6.QtSvg import QSvgRenderer

    fresh = render_icons.render(QSvgRenderer(str(ICONS / f"{ICON_NAME}.svg")), 64)
    with Image.open(ICONS / "hicolor" / "64x64" / "apps" / f"{ICON_NAME}.png") as committed:
        difference = ImageChops.difference(fresh, committed.convert("RGBA"))
    mean_diff = sum(ImageStat.Stat(difference).mean) / 4
    assert mean_diff < 2.0, f"PNG differs from the SVG render (mean {mean_diff:.1f}/255): run make icons"


def test_ico_holds_several_sizes():
    with Image.open(ICONS / f"{ICON_NAME}.ico") as ico:
        sizes = set(ico.info["sizes"])
    assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= sizes


# ---------------------------------------------------------------------------------- desktop entry
def desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(DESKTOP.read_text(encoding="utf-8"))
    return parser["Desktop Entry"]


def test_desktop_entry_has_the_required_keys():
    entry = desktop_entry()
    assert entry["Type"] == "Application"
    assert entry["Name"] == APP_NAME
    assert entry["Terminal"] == "false"
    assert entry["Categories"] == "Science;Education;DataVisualization;"
    assert "inode/directory" in entry["MimeType"].split(";")
    for key in ("Comment", "Exec", "Icon"):
        assert entry[key].strip()


def test_desktop_entry_exec_and_icon_are_consistent():
    entry = desktop_entry()
    program, *args = entry["Exec"].split()
    assert program == entry["TryExec"]
    assert program in pyproject()["project"]["gui-scripts"], "Exec must be the installed GUI script"
    # The GUI takes one optional dataset path, so one folder per launch (%f, not %F).
    assert args == ["%f"], "a folder opened with the app (MimeType inode/directory) is its argument"
    assert entry["Icon"] == ICON_NAME == DESKTOP.stem
    assert (ICONS / "hicolor" / "48x48" / "apps" / f"{entry['Icon']}.png").is_file()


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils not installed")
def test_desktop_entry_validates():
    proc = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if ": error: " in line]
    assert proc.returncode == 0 and not errors, proc.stdout + proc.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="freedesktop entries are a Linux thing")
def test_install_desktop_entry_installs_and_uninstalls(tmp_path):
    program = tmp_path / "DGKIP Studio" / "DGKIP Studio"      # spaces, like the frozen app
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    data = tmp_path / "share"
    env = {**os.environ, "XDG_DATA_HOME": str(data)}
    script = str(PACKAGING / "install_desktop_entry.sh")

    proc = subprocess.run([script, "--exec", str(program)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = (data / "applications" / f"{ICON_NAME}.desktop").read_text(encoding="utf-8")
    assert f'Exec="{program}" %f' in installed
    assert f"TryExec={program}\n" in installed
    for size in SIZES:
        assert (data / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{ICON_NAME}.png").is_file()
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / f"{ICON_NAME}.svg").is_file()

    proc = subprocess.run([script, "--uninstall"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    leftovers = [p for p in data.rglob("*") if p.is_file() and ICON_NAME in p.name]
    assert not leftovers


# ------------------------------------------------------------------------------------ frozen build
@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(sys.platform != "linux", reason="the build/smoke scripts are exercised on Linux")
def test_frozen_app_self_test(tmp_path):
    dist, work = tmp_path / "dist", tmp_path / "build"
    env = {**os.environ, "DGKIP_DIST_DIR": str(dist), "DGKIP_WORK_DIR": str(work),
           "DGKIP_VENV": str(Path(sys.prefix))}
    try:
        build = subprocess.run([str(PACKAGING / "build.sh")], env=env, capture_output=True, text=True)
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-6000:]
        print(build.stdout[-300:])  # build time and bundle size
        app = dist / APP_NAME / APP_NAME
        assert app.is_file()
        smoke = subprocess.run([str(PACKAGING / "smoke.sh"), str(app)], env=env, capture_output=True, text=True)
        assert smoke.returncode == 0, smoke.stdout[-6000:] + smoke.stderr[-6000:]
    finally:
        shutil.rmtree(work, ignore_errors=True)  # several GB each; pytest keeps old tmp dirs
        shutil.rmtree(dist, ignore_errors=True)
